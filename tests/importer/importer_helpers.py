"""Helpers shared by the importer tests (imported by name: pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0_MS = 1_700_000_000_000


def write_bundle(
    out: Path,
    runs: dict[str, Callable[[Any], None]],
    source: dict[str, Any] | None = None,
    created: dict[str, str] | None = None,
) -> Path:
    """A bundle with one run per entry: `fill(writer)` records its attributes through nmig.schema; each run's
    sys/creation_time is `created[sys_id]`, else 2024-05-01T12:00:00.123Z."""
    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {"source": source or {"workspace": "legacy", "project": "proj"}})
    for sys_id, fill in runs.items():
        with EntityWriter(out, "run", sys_id) as writer:
            writer.add_atom("sys/id", "string", sys_id)
            writer.add_atom("sys/creation_time", "datetime", (created or {}).get(sys_id, "2024-05-01T12:00:00.123Z"))
            fill(writer)
    return out


def report(bundle: Path) -> dict[str, Any]:
    found = sorted(bundle.glob("import-report.*.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text(encoding="utf-8"))


def items(doc: dict[str, Any], case: str | None = None, run: str | None = None) -> list[dict[str, str]]:
    return [i for i in doc["items"] if (case is None or i["case"] == case) and (run is None or i["run"] == run)]
