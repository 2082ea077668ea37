"""Imports run one way, from commands down to pure logic: no module of attrpipe imports, directly or through others,
a module that imports it back. Module-level and function-level imports both count (a deferred import still ties the
two modules together)."""

from __future__ import annotations

import ast
from pathlib import Path

import attrpipe

ROOT = Path(attrpipe.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module under attrpipe/; a package's ``__init__`` is the package itself."""
    mods = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = ("attrpipe",) + f.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the attrpipe modules it imports anywhere in its body."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, f in mods.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    # `import a.b.c` binds `a` but loads a.b.c: count the deepest module of ours it names
                    target = alias.name
                    while target and target not in mods:
                        target = target.rpartition(".")[0]
                    if target:
                        graph[name].add(target)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in mods:  # `from pkg import module`
                        graph[name].add(sub)
                    elif target in mods:  # `from module import name`
                        graph[name].add(target)
    for name in graph:
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "attrpipe.pseudolabel.pipeline" in graph and "attrpipe.train" in graph
    # module level, `from package import module` and a function-level import
    assert "attrpipe.pseudolabel.units" in graph["attrpipe.pseudolabel.pipeline"]
    assert "attrpipe.ray_utils" in graph["attrpipe"]
    assert "attrpipe.train.driver" in graph["attrpipe.train"]


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
