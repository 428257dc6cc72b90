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


# What cli.py may import from nmig: the packages' public faces and the shared top-level modules.
PUBLIC_FACES = {
    "nmig", "nmig.errors", "nmig.secrets", "nmig.exporter", "nmig.importer", "nmig.schema", "nmig.migrate",
    "nmig.demo", "nmig.emulators", "nmig.emulators.legacy", "nmig.emulators.neptune3",
    # shared by both halves, like nmig.errors: the environment checks (disk errors) and the service-reachability
    # bound that --timeout sets
    "nmig.environment", "nmig.reachability",
    # the CA bundle --ca-bundle sets for every client
    "nmig.trust",
    # --shard I/N, one partition rule for export, import and verify
    "nmig.sharding",
}


def test_the_cli_uses_only_public_faces() -> None:
    used = set()
    for node in ast.walk(ast.parse((ROOT / "cli.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nmig"):
            used.add(node.module)
    assert "nmig.importer" in used and "nmig.exporter" in used
    assert used <= PUBLIC_FACES, used - PUBLIC_FACES


def test_the_importer_public_face_resolves() -> None:
    import nmig.importer

    for name in nmig.importer.__all__:
        assert getattr(nmig.importer, name) is not None, name
    try:
        nmig.importer.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")
