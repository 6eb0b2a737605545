"""The engine's modules form a layered graph: no module imports, even only for type checking,
a module that imports it back, so each stage can be read (and changed) from the bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "service" / "cql_like"


def _internal_imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports anywhere in its text (top level, inside functions
    and under `if TYPE_CHECKING:` alike)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.startswith("service.cql_like."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("service.cql_like."):
                    found.add(alias.name.split(".")[2])
    return (found & modules) - {path.stem}


def import_graph() -> dict[str, set[str]]:
    """module -> modules of the package it imports ("__init__" included)."""
    return {path.stem: _internal_imports(path) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}   # 1 visiting, 2 done
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_sees_a_cycle_through_a_type_checking_import():
    graph = {"runtime": {"values"}, "library": {"runtime", "compiler"}, "compiler": {"runtime"}, "values": set()}
    assert find_cycle(graph) is None
    graph["runtime"].add("library")
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"runtime", "library"} <= set(cycle)


def test_the_import_scan_reads_imports_under_type_checking(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .library import Library\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "library" for n in ast.walk(tree))
    assert "library" in import_graph()["tooling"]


def test_the_engine_package_has_no_import_cycle():
    graph = import_graph()
    assert "runtime" in graph and "library" in graph
    assert find_cycle(graph) is None, f"import cycle in service/cql_like: {' -> '.join(find_cycle(graph))}"


def test_the_runtime_context_does_not_know_the_library_module():
    assert "library" not in import_graph()["runtime"]
    assert "compiler" not in import_graph()["runtime"]
