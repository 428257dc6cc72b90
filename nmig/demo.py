"""`nmig demo`: a full rehearsal of a migration on this machine, against loopback emulators of both services.

It starts the legacy and the 3.x emulators in this process, then runs the real commands (`nmig export`,
`nmig inspect`, `nmig import`, `nmig verify`) as child processes, exactly as a user would type them, so
what the demo shows is what a migration does. Tokens go to the children through NEPTUNE_API_TOKEN, never on a
command line or the screen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmig.emulators.http import EmulatorInfo
from nmig.emulators.sample import SAMPLE_PROJECT, sample_fixture
from nmig.errors import NmigError

Echo = Callable[[str], None]


@dataclass
class Totals:
    runs: int = 0
    models: int = 0  # models and model versions (imported as runs; their content is not in the other rows)
    points: int = 0
    files: int = 0
    bytes: int = 0


def fixture_totals(fixture: dict[str, Any]) -> Totals:
    """What the sample project holds in its non-trashed runs (the ones a default export takes)."""
    from nmig.emulators.legacy.fixture import content_size, load_fixture

    totals = Totals()
    project = load_fixture(fixture).projects[0]
    totals.models = len(project.models) + len(project.model_versions)
    for run in project.runs:
        if run.trashed:
            continue
        totals.runs += 1
        for attribute in run.attributes.values():
            kind, value = attribute.type, attribute.value
            if kind in ("floatSeries", "stringSeries", "imageSeries"):
                totals.points += len(value.steps)
            if kind == "file":
                totals.files += 1
            elif kind == "fileSet":
                totals.files += len(value)
            elif kind == "imageSeries":
                totals.files += len(value.contents)
            totals.bytes += content_size(attribute)
    return totals


def _run_command(args: list[str], info: EmulatorInfo, echo: Echo, workdir: Path, check: bool = True) -> int:
    echo(f"\n$ nmig {' '.join(args)}")
    env = {**os.environ, **info.env, "NEPTUNE_API_TOKEN": info.api_token}
    started = time.monotonic()
    # Run in the work folder: anything a client leaves in its current directory stays with the demo's files.
    completed = subprocess.run([sys.executable, "-m", "nmig", *args], env=env, cwd=workdir, check=False)
    echo(f"  ({time.monotonic() - started:.1f} s, exit {completed.returncode})")
    if check and completed.returncode != 0:
        raise NmigError(f"the demo step `nmig {args[0]}` failed with exit status {completed.returncode}")
    return completed.returncode


def run_demo(keep: Path | None, echo: Echo) -> int:
    """Run the rehearsal; returns the exit status of `nmig verify` (0 when the target matches the bundle)."""
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.neptune3 import serve_neptune3

    if keep is not None:
        keep = keep.resolve()  # the commands run inside it, so paths handed to them must not be relative
        keep.mkdir(parents=True, exist_ok=True)
        if any(keep.iterdir()):
            raise NmigError(f"--keep folder {keep} is not empty; give a new or empty folder")
    workdir = keep or Path(tempfile.mkdtemp(prefix="nmig-demo-"))
    bundle = workdir / "bundle"
    report = workdir / "verify-report.json"
    fixture = sample_fixture()
    source = fixture_totals(fixture)
    started = time.monotonic()
    project = fixture["projects"][0]
    trashed = sum(1 for run in project["runs"] if run["attributes"].get("sys/trashed", {}).get("value") is True)
    versions = sum(len(model.get("versions", [])) for model in project.get("models", []))
    echo(
        f"Sample legacy project: {source.runs} runs, {source.points:,} series points, {source.files} files; "
        f"{trashed} trashed run (left out, as a default export does) and {len(project.get('models', []))} model "
        f"with {versions} versions (3.x has no model registry: imported as runs, with --models-as-runs)"
    )
    with serve_legacy(fixture) as legacy, serve_neptune3(data_dir=workdir / "neptune3") as target:
        source_project = f"{legacy.workspace}/{SAMPLE_PROJECT}"
        target_project = f"{target.workspace}/{SAMPLE_PROJECT}"
        echo(f"Legacy emulator at {legacy.url}, Neptune 3.x emulator at {target.url}")
        _run_command(["export", "--project", source_project, "--out", str(bundle)], legacy, echo, workdir)
        _run_command(["inspect", str(bundle)], legacy, echo, workdir)
        # the sample model and its versions arrive as runs too (3.x has no model registry)
        _run_command(["import", str(bundle), "--project", target_project, "--models-as-runs"], target, echo, workdir)
        verify_status = _run_command(
            ["verify", str(bundle), "--project", target_project, "--models-as-runs", "--report", str(report)],
            target, echo, workdir, check=False,
        )
    bundle_totals = _bundle_totals(bundle)
    target_totals = _target_totals(report)
    echo("")
    echo(f"{'':10}{'source':>14}{'bundle':>14}{'target':>14}")
    for field in ("runs", "models", "points", "files", "bytes"):
        row = [getattr(t, field) if t else None for t in (source, bundle_totals, target_totals)]
        echo(f"{field:10}" + "".join(f"{v:>14,}" if v is not None else f"{'?':>14}" for v in row))
    echo(f"verify: {'all green' if verify_status == 0 else 'DIFFERENCES FOUND (see ' + str(report) + ')'}")
    echo(f"\nBundle: {bundle}" + ("" if keep else f"  (in a temporary folder: remove {workdir} when done, or use --keep DIR)"))
    echo("Open it with pandas:")
    echo("    import nmig.schema as nb")
    echo(f"    runs = nb.read_runs({str(bundle)!r})")
    echo(f"    loss = nb.read_float_series({str(bundle)!r}, path='train/loss')")
    echo(f"Done in {time.monotonic() - started:.0f} s.")
    return verify_status


def _bundle_totals(bundle: Path) -> Totals | None:
    from nmig.schema import Bundle

    totals = Totals()
    totals.models = len(Bundle(bundle).entities("model")) + len(Bundle(bundle).entities("model_version"))
    for entity in Bundle(bundle).entities("run"):
        totals.runs += 1
        for attribute in entity.attributes:
            kind = attribute["type"]
            if kind in ("floatSeries", "stringSeries", "imageSeries", "fileSeries"):
                totals.points += int(attribute.get("points", 0))
            if kind == "file":
                totals.files += 1
                totals.bytes += int(attribute["file"]["size"])
            elif kind == "fileSet":
                totals.files += len(attribute["entries"])
                totals.bytes += sum(int(e["size"]) for e in attribute["entries"])
        for batch in entity.iter_series("file"):
            totals.files += batch.num_rows
            totals.bytes += sum(batch.column("file_size").to_pylist())
    return totals


def _target_totals(report: Path) -> Totals | None:
    """What verify found in the target, from its JSON report (None when verify did not get that far)."""
    try:
        found = json.loads(report.read_text(encoding="utf-8"))["found_totals"]
    except (OSError, ValueError, KeyError):
        return None
    return Totals(runs=found["runs"], models=found.get("models", 0), points=found["points"], files=found["files"],
                  bytes=found["bytes"])
