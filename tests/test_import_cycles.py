"""No import cycles between the modules of ``lsl_session`` and ``outlets``.

Every ``import``/``from ... import`` in a module (top level or inside a function)
is an edge; importing from one's own parent package (``from lsl_session import
__version__``) is not counted, Python initialises the parent first.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Cycles still open in another issue (none).
KNOWN: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in ("lsl_session", "outlets"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {
            d for d in deps if d in mods and d != name and not name.startswith(d + ".")
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_cycles() -> None:
    cycles = [sorted(c) for c in _cycles(_graph(_modules())) if c not in KNOWN]
    assert cycles == []


def test_phone_connection_does_not_import_the_relay() -> None:
    graph = _graph(_modules())
    assert "outlets.phone.relay" not in graph["outlets.phone._connection"]
    assert "outlets.phone._connection" in graph["outlets.phone.relay"]


def test_hands_and_sync_check_share_video_helpers_below_them() -> None:
    graph = _graph(_modules())
    assert (
        "lsl_session.processing.sync_check" not in graph["lsl_session.processing.hands"]
    )
    assert (
        "lsl_session.processing.hands" not in graph["lsl_session.processing.sync_check"]
    )
