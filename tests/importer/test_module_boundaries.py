"""import, verify and migrate share their helpers through public names: no module of theirs reaches into
another's private (underscore) names, so each helper has one home and one name."""

from __future__ import annotations

import ast
from pathlib import Path

import nmig

ROOT = Path(nmig.__file__).parent
MODULES = sorted((ROOT / "importer").glob("*.py")) + [ROOT / "migrate.py"]


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nmig"):
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
    return found


def test_no_private_names_imported_across_modules() -> None:
    assert len(MODULES) > 5
    offending = {path.name: names for path in MODULES if (names := _private_imports(path))}
    assert offending == {}


def test_the_guard_sees_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from nmig.importer.runner import _hidden, visible\nfrom os import _exit\n", encoding="utf-8")
    assert _private_imports(sample) == ["nmig.importer.runner._hidden"]
