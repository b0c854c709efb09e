"""The server's modules import each other without a cycle (issue 13, item 5).

Read from the source with ``ast``, not by importing: every import between two
modules of ``server/`` counts, at module level and inside functions alike, so a
cycle cannot hide behind an import moved into a function. Such an import is
allowed only to keep something out of a process that does not need it, and then
says so in a comment.
"""
from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "server"

# An edge: (importing module, imported module) -> where, "line N" plus " (in a function)"
Edges = dict[tuple[str, str], str]


def _targets(node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    """The modules of ``modules`` (names of the server package's modules) that ``node`` imports."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif node.level == 1:                     # from .x import y / from . import x
        names = [f"scangate.server.{node.module}"] if node.module else \
                [f"scangate.server.{a.name}" for a in node.names]
    elif node.level == 0 and node.module in ("scangate.server", "scangate"):
        base = node.module
        names = [f"{base}.{a.name}" for a in node.names]
        if base == "scangate":
            names = [n for n in names if n == "scangate.server"]
    elif node.level == 0 and node.module:
        names = [node.module]
    else:
        raise AssertionError(f"line {node.lineno}: an import of level {node.level} leaves the package")
    out = []
    for name in names:
        parts = name.split(".")
        if parts[:2] == ["scangate", "server"] and len(parts) > 2 and parts[2] in modules:
            out.append(parts[2])
    return out


def import_graph(package: Path) -> tuple[Edges, list[tuple[str, int]]]:
    """The edges between the modules of ``package`` (its top-level .py files), and
    the function-level ones as (module, line)."""
    sources = {p.stem: p for p in sorted(package.glob("*.py"))}
    modules = set(sources) - {"__init__"}
    edges: Edges = {}
    nested: list[tuple[str, int]] = []
    for name, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, modules):
                if target == name:
                    continue
                inner = id(node) not in top and not _in_type_checking(tree, node)
                where = f"line {node.lineno}" + (" (in a function)" if inner else "")
                edges.setdefault((name, target), where)
                if inner:
                    nested.append((name, node.lineno))
    return edges, nested


def _in_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    """Whether ``node`` sits in a module-level ``if TYPE_CHECKING:`` block (still a
    module-level import for the graph)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            if any(n is node for n in ast.walk(stmt)):
                return True
    return False


def find_cycle(edges: Edges) -> list[str] | None:
    """A cycle of the graph as its modules in order, the first repeated last; None if it has none."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    state: dict[str, int] = {}         # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def describe(cycle: list[str], edges: Edges) -> str:
    return "; ".join(f"{a} -> {b} ({edges[(a, b)]})" for a, b in zip(cycle, cycle[1:]))


def test_the_server_modules_import_each_other_without_a_cycle() -> None:
    edges, _ = import_graph(SERVER)
    # the graph was read: the supervisor starts the workers, and the writer's side
    # counts verdicts (a parser that found nothing would pass vacuously)
    assert ("main", "service") in edges and ("scanlink", "metrics") in edges, sorted(edges)
    cycle = find_cycle(edges)
    assert cycle is None, f"import cycle in server/: {describe(cycle, edges)}"


def test_every_import_of_a_server_module_inside_a_function_says_why() -> None:
    """A comment on the import's line or on the two lines above it: the reason it
    is not at module top (what it keeps out of which process)."""
    _, nested = import_graph(SERVER)
    silent = []
    for module, line in nested:
        lines = (SERVER / f"{module}.py").read_text(encoding="utf-8").splitlines()
        if not any("#" in text for text in lines[max(0, line - 3):line]):
            silent.append(f"{module}.py:{line}")
    assert silent == []


def test_the_cycle_finder_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from .b import f\nimport json\n")
    (tmp_path / "b.py").write_text("def f():\n    from scangate.server.c import g\n    return g\n")
    (tmp_path / "c.py").write_text("def g():\n    from . import a\n    return a\n")
    (tmp_path / "d.py").write_text("from scangate.server import a, b\nfrom scangate import server\n")
    edges, nested = import_graph(tmp_path)
    assert edges == {("a", "b"): "line 1", ("b", "c"): "line 2 (in a function)",
                     ("c", "a"): "line 2 (in a function)", ("d", "a"): "line 1", ("d", "b"): "line 1"}
    assert sorted(nested) == [("b", 2), ("c", 2)]
    cycle = find_cycle(edges)
    assert cycle == ["a", "b", "c", "a"]
    assert describe(cycle, edges) == ("a -> b (line 1); b -> c (line 2 (in a function)); "
                                      "c -> a (line 2 (in a function))")
    del edges[("c", "a")]
    assert find_cycle(edges) is None
