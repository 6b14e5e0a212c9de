"""The phone package has no import cycles (also none hidden behind TYPE_CHECKING)."""

from __future__ import annotations

import ast
from pathlib import Path

import outlets.phone

PACKAGE = Path(outlets.phone.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules of ``outlets.phone`` imported anywhere in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "outlets.phone":
                found |= {f"outlets.phone.{a.name}" for a in node.names}
            elif node.module.startswith("outlets.phone."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("outlets.phone.")}
    return found


def test_no_import_cycles_in_phone_package():
    modules = {
        f"outlets.phone.{p.stem}": p
        for p in PACKAGE.glob("*.py")
        if p.stem != "__init__"
    }
    graph = {m: _imports(p) & set(modules) for m, p in modules.items()}
    assert "outlets.phone.relay" not in graph["outlets.phone._connection"]
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
