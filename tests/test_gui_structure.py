"""The GUI's rooms stay small and their imports point one way: no module of
``workstation/ui`` over 600 lines, each starting with what it is for, and no
import cycle among them (imports inside functions count: they are cycles too,
only deferred)."""

from __future__ import annotations

import ast
from pathlib import Path

UI = Path(__file__).resolve().parents[1] / "workstation" / "ui"
MAX_LINES = 600


def _ui_imports(path: Path, names: set[str]) -> set[str]:
    """The ui modules that ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "workstation.ui":
            found |= {alias.name for alias in node.names if alias.name in names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workstation.ui."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names
                      if a.name.startswith("workstation.ui.")}
    return found - {path.stem}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_ui_module_is_over_600_lines_and_each_says_what_it_is_for():
    modules = sorted(UI.glob("*.py"))
    assert len(modules) > 15
    too_long = {p.name: n for p in modules if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}
    assert [p.name for p in modules if not ast.get_docstring(ast.parse(p.read_text()))] == []


def test_ui_modules_import_each_other_without_cycles():
    names = {p.stem for p in UI.glob("*.py")}
    graph = {p.stem: _ui_imports(p, names) for p in UI.glob("*.py")}
    assert graph["dialogs"] and "reviewer" in graph["main_window"]  # the graph is read
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
