"""What `nmig import` is asked to do (the CLI's options, field for field)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmig.sharding import Shard


@dataclass
class ImportOptions:
    bundle_dir: Path | str  # a folder, or a URL on object storage (nmig.schema.store)
    project: str | None  # "workspace/project", or "workspace" for the legacy project's name there
    api_token: str | None
    runs: Sequence[str] = ()  # --runs patterns (see plan.select_runs)
    max_workers: int = 8  # README: a run's time is mostly round trips and waits, on a remote or throttling service
    dry_run: bool = False
    create_project: bool = True
    visibility: str | None = None  # --visibility: overrides the legacy project's when nmig creates the project
    state_path: Path | str | None = None  # a path or a URL (state.StateFile.at); default: in the bundle
    quiet: bool = False
    experiments: str = "by-name"  # how runs join 3.x experiments: nmig.importer.experiments.MODES
    models_as_runs: bool = False  # models and model versions imported as runs (plan.plan_run)
    sync_trash: bool = False  # runs trashed in 2.x since their export (export.json "trashed") trashed in 3.x too
    storage_options: dict[str, Any] | None = None  # fsspec's, for a bundle_dir URL; never printed
    project_map: Sequence[str] = ()  # --project-map: SRC=DST pairs or files of them (project.parse_project_map)
    shard: Shard | None = None  # --shard I/N: only this shard's runs (partition.py), own state and report
