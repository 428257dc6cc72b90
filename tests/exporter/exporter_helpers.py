"""Helpers for the exporter tests: legacy projects in fixture format v1, served by the legacy emulator, exported
with the real `neptune` client, and bundles compared. (conftest.py puts this folder on sys.path.)"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nmig.emulators.http import EmulatorInfo
from nmig.emulators.legacy.server import serve_legacy
from nmig.exporter import ExportOptions, ExportResult, export_project
from nmig.schema import KIND_FOLDERS, content_digest

WORKSPACE = "acme"
PROJECT = "vision"
REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_TYPES_FIXTURE = REPO_ROOT / "tests" / "data" / "legacy_all_types.json"
T0 = 1_700_000_000_000  # epoch ms


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_run(n: int, *, points: int = 2_500, trashed: bool = False, custom_id: str | None = None,
             modified: str = "2024-05-01T12:00:00.123Z", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run with one attribute of most types; sizes chosen so series span several pages of 1,000."""
    attrs: dict[str, Any] = {
        "sys/name": {"type": "string", "value": f"run {n}"},
        "sys/modification_time": {"type": "datetime", "value": modified},
        "sys/trashed": {"type": "bool", "value": trashed},
        "sys/tags": {"type": "stringSet", "values": ["exp", f"tag{n % 3}"]},
        "params/lr": {"type": "float", "value": 0.001 * n},
        "params/epochs": {"type": "int", "value": 10 + n},
        "params/use_amp": {"type": "bool", "value": n % 2 == 0},
        "params/note": {"type": "string", "value": f"note {n} ✓"},
        "params/weird": {"type": "float", "value": ["NaN", "Infinity", "-Infinity"][n % 3]},
        "metrics/loss": {
            "type": "floatSeries",
            "steps": [float(i) for i in range(points)],
            "values": [1.0 / (i + 1) if i % 997 else "NaN" for i in range(points)],
            "timestamps": [T0 + 17 * i for i in range(points)],
        },
        "logs/stdout": {
            "type": "stringSeries",
            "steps": [0.5, 1.5, 2.5],
            "values": [f"line {i} of run {n}" for i in range(3)],
            "timestamps": [T0, T0 + 1, T0 + 2],
        },
        "model/weights": {"type": "file", "ext": "bin", "content_base64": b64(bytes(range(256)) * (n + 1))},
        "source_code/files": {
            "type": "fileSet",
            "files": {"train.py": {"content_text": f"print({n})\n"}, "cfg/base.yaml": {"content_text": "a: 1\n"}},
        },
        "eval/images": {
            "type": "imageSeries",
            "steps": [0.0, 5.0],
            "timestamps": [T0 + 5, T0 + 6],
            "names": ["first", "second"],
            "descriptions": ["d1", ""],
            "contents_base64": [b64(b"\x89PNG\r\n\x1a\n" + bytes([n, 1])), b64(b"\x89PNG\r\n\x1a\n" + bytes([n, 2]))],
        },
    }
    if custom_id is not None:
        attrs["sys/custom_run_id"] = {"type": "string", "value": custom_id}
    attrs.update(extra or {})
    return {"attributes": attrs}


def make_project(runs: list[dict[str, Any]], models: bool = True) -> dict[str, Any]:
    project: dict[str, Any] = {
        "name": PROJECT,
        "key": "VIS",
        "visibility": "priv",
        "description": "exporter tests",
        "attributes": {"team": {"type": "string", "value": "core"}},
        "runs": runs,
    }
    if models:
        project["models"] = [
            {
                "key": "CLS",
                "attributes": {"sys/name": {"type": "string", "value": "classifier"}},
                "versions": [
                    {"attributes": {"stage": {"type": "string", "value": "staging"}}},
                    {"attributes": {"model/binary": {"type": "file", "ext": "pt", "content_text": "weights"}}},
                ],
            }
        ]
    return {"fixture_version": 1, "workspace": WORKSPACE, "projects": [project]}


def standard_fixture() -> dict[str, Any]:
    runs = [make_run(n, custom_id=f"sweep-{n}" if n % 2 else None) for n in range(1, 7)]
    runs.append(make_run(7, trashed=True, points=10))
    return make_project(runs)


@contextlib.contextmanager
def serving(fixture: dict[str, Any] | Path, **faults: Any) -> Iterator[EmulatorInfo]:
    with serve_legacy(fixture, **faults) as info:
        yield info


def export(info: EmulatorInfo, out: Path, **options: Any) -> ExportResult:
    options.setdefault("quiet", True)
    options.setdefault("page_size", 1_000)
    options.setdefault("max_workers", 4)
    return export_project(
        ExportOptions(project=f"{WORKSPACE}/{PROJECT}", out=out, api_token=info.api_token, **options)
    )


def digests(bundle: Path) -> dict[str, str]:
    """kind/sys_id -> content digest of every entity folder in a bundle."""
    found: dict[str, str] = {}
    for folder in KIND_FOLDERS.values():
        root = bundle / folder
        if root.is_dir():
            for entity in sorted(root.iterdir()):
                found[f"{folder}/{entity.name}"] = content_digest(entity)
    return found


def manifest(bundle: Path, sys_id: str, folder: str = "runs") -> dict[str, Any]:
    return json.loads((bundle / folder / sys_id / "manifest.json").read_text("utf-8"))
