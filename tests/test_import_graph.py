"""The import graph of `src/tractable`: no cycles, and the floors of docs/architecture.md.

Every import counts, also those inside functions (they run too, only later); imports under
`if TYPE_CHECKING:` do not (they never run). A module's import of its own parent package
is not an edge (Python imports the parents of a module before the module anyway).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for path in sorted((root / "tractable").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                skip.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skip


def _imported_names(module: str, is_package: bool, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


@functools.cache  # parsed once for every floor checked below
def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the tractable modules it imports (a name imported from a module is an
    edge to that module, or to the submodule of that name if there is one)."""
    mods = _modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text("utf-8"))
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            for name in _imported_names(module, path.name == "__init__.py", node):
                target = resolve(name)
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_its_members():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_imports_and_skips_type_checking_ones(tmp_path):
    pkg = tmp_path / "tractable"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from tractable.b import g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from tractable import a\n")
    graph = import_graph(tmp_path)
    assert graph["tractable.a"] == {"tractable.b"}
    assert graph["tractable.b"] == set()


def test_src_tractable_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    assert cycles(graph) == []


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


@pytest.mark.parametrize("lower,higher", [
    ("tractable.sampling", "tractable.models"),
    ("tractable.sampling", "tractable.training"),
    ("tractable.sampling", "tractable.evaluation"),
    ("tractable.models", "tractable.training"),
    ("tractable.models", "tractable.evaluation"),
    ("tractable.models", "tractable.cli"),
    ("tractable.likelihoods", "tractable.models"),
    ("tractable.nn", "tractable.models"),
    ("tractable.data", "tractable.models"),
    ("tractable.training", "tractable.cli"),
    ("tractable.training", "tractable.evaluation"),
    ("tractable.run_folder", "tractable.models"),
    ("tractable.config", "tractable.models"),
    ("tractable.checks", "tractable.sampling"),
    ("tractable.limits", "tractable.config"),
    ("tractable.folder_lock", "tractable.models"),
    ("tractable.evaluation", "tractable.cli"),
    ("tractable.compression", "tractable.models"),
    ("tractable.compression", "tractable.training"),
    ("tractable.compression", "tractable.cli"),
    ("tractable.likelihoods", "tractable.compression"),
    ("tractable.sampling", "tractable.compression"),
])
def test_lower_floors_never_reach_higher_ones(lower, higher):
    graph = import_graph()
    for module in graph:
        if _package(module) == lower:
            reached = {_package(m) for m in _reaches(graph, module)}
            assert higher not in reached, f"{module} reaches {higher}"
