"""The rooms stay small and their imports point one way: no module of the
``workstation`` package (the GUI's included) over 600 lines, each starting
with what it is for, and no import cycle among them (imports inside functions
count: they are cycles too, only deferred; an import under ``if
TYPE_CHECKING`` does not, it never runs)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workstation"
UI = PACKAGE / "ui"
MAX_LINES = 600


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in the file:
    ``from P import X`` counts as importing ``P.X`` when that is a module,
    else ``P``."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
    return found - {name}


def _import_graph() -> dict[str, set[str]]:
    paths = _module_names()
    return {name: _imports(name, path, set(paths)) for name, path in paths.items()}


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


def test_no_module_is_over_600_lines_and_each_says_what_it_is_for():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(list(UI.glob("*.py"))) > 15 and len(modules) > 100
    too_long = {str(p.relative_to(PACKAGE)): n for p in modules
                if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}
    assert [str(p.relative_to(PACKAGE)) for p in modules
            if not ast.get_docstring(ast.parse(p.read_text()))] == []


def test_ui_modules_import_each_other_without_cycles():
    graph = _import_graph()
    ui = {name: deps & {n for n in graph if n.startswith("workstation.ui.")}
          for name, deps in graph.items() if name.startswith("workstation.ui.")}
    assert ui["workstation.ui.dialogs"] and "workstation.ui.reviewer" in \
        ui["workstation.ui.main_window"]  # the graph is read
    assert _cycles(ui) == []


def test_the_package_imports_without_cycles():
    graph = _import_graph()
    # read as written: lazy imports, package __init__s and relative imports count
    assert "workstation.regression.gate" in graph["workstation.regression.report"]
    assert "workstation.probes.base" in graph["workstation.probes"]
    assert "workstation.training" in graph["workstation.ui.version_jobs"]  # inside a function
    # the gate reads the report only as a type (under TYPE_CHECKING)
    assert "workstation.regression.report" not in graph["workstation.regression.gate"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
