"""The 3.x emulator's shape (moto's): backend modules (state and lookups, typed errors) import neither the
wire layer nor the handlers nor the HTTP framework; no module-level import cycles inside the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nmig" / "emulators" / "neptune3"
# state and lookups; they raise typed errors and know nothing of requests
BACKEND = {"errors", "store", "storage", "projects"}


def _imports() -> dict[str, set[str]]:
    """Module -> the nmig modules it imports at run time (imports under `if TYPE_CHECKING:` left out)."""
    graph: dict[str, set[str]] = {}
    for file in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmig"):
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("nmig"))
        graph[file.stem] = {m.removeprefix("nmig.emulators.neptune3.") for m in found if m.startswith("nmig.emulators.neptune3.")}
        graph[file.stem] |= {"<http>"} if any(m.startswith("nmig.emulators.http") for m in found) else set()
    return graph


def test_backend_modules_import_no_wire_handler_or_http_module() -> None:
    graph = _imports()
    assert BACKEND <= set(graph)
    for module in BACKEND:
        assert graph[module] & set(graph) <= BACKEND, f"{module} imports {graph[module] - BACKEND}"
        assert "<http>" not in graph[module], f"{module} imports the HTTP framework"


def test_no_import_cycles() -> None:
    imports = _imports()
    graph = {module: {dep for dep in deps if dep in imports} for module, deps in imports.items()}
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, " -> ".join((*stack, module))
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*stack, module))
        done.add(module)

    for module in graph:
        visit(module, ())
