"""`nmig export`: a Neptune 2.x project into a bundle (see nmig.schema), through the official `neptune` client.

Public API: `ExportOptions`, `ExportResult`, `export_project(options)`, `validate_project(name)`.
"""

from __future__ import annotations

import re

from nmig.errors import NmigError
from nmig.exporter.export import ExportOptions, ExportResult, export_project

_PROJECT = re.compile(r"[^/\s]+/[^/\s]+")


def validate_project(name: str | None) -> str:
    if not name or not name.strip():
        raise NmigError("no project: pass --project WORKSPACE/PROJECT or set NEPTUNE_PROJECT")
    name = name.strip()
    if not _PROJECT.fullmatch(name):
        raise NmigError(f"--project {name!r}: expected WORKSPACE/PROJECT")
    return name


__all__ = ["ExportOptions", "ExportResult", "export_project", "validate_project"]
