"""An import's state as a reader sees it while the import runs: the state file, then the newer entries of its
journal (`<state>.journal/`, nmig.importer.state). Read-only: nothing is compacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def state_runs(path: Path) -> dict[str, dict[str, Any]]:
    """{sys_id: entry} of a local state file and its journal; {} while either is absent or half-read."""
    try:
        runs: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["runs"]
        journal = path.with_name(path.name + ".journal")
        for entry in sorted(journal.glob("*.json")) if journal.is_dir() else []:
            doc = json.loads(entry.read_text(encoding="utf-8"))
            runs[doc["sys_id"]] = doc["entry"]
        return runs
    except (ValueError, OSError, KeyError):
        return {}
