"""The reader's layout: the stream machinery stands on the Store, never on the dataset.

Read from the source with ``ast`` (every import counts, also those under
``TYPE_CHECKING`` or inside a function): only ``dataset.py`` and the package's
``__init__`` may import ``fedgroups.reader.dataset``; the modules of ``reader/`` import
each other without a cycle; and no module reaches into another module's private members.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fedgroups.reader

PACKAGE = "fedgroups.reader"
ROOT = Path(fedgroups.reader.__file__).parent
DATASET = f"{PACKAGE}.dataset"


def _name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _trees() -> dict[str, ast.Module]:
    return {_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(ROOT.glob("*.py"))}


def imports_of(name: str, tree: ast.Module, modules: set[str]) -> set[str]:
    """The modules of the package that module ``name`` imports, wherever the import is."""
    package = name if name == PACKAGE else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            # "from fedgroups.reader import stream" imports the submodule stream
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # a name inside a module: the module itself
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    trees = _trees()
    modules = set(trees)
    return {name: imports_of(name, tree, modules) for name, tree in trees.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_only_the_dataset_module_and_the_package_import_the_dataset():
    graph = import_graph()
    assert DATASET in graph and f"{PACKAGE}.store" in graph
    importers = sorted(m for m, deps in graph.items() if DATASET in deps)
    assert importers == [PACKAGE], importers
    # importing the package would import the dataset too
    others = sorted(m for m, deps in graph.items() if PACKAGE in deps and m != DATASET)
    assert not others, others


def test_the_reader_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, find_cycle(import_graph())


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_reader_sees_every_kind_of_import():
    modules = {PACKAGE, DATASET, f"{PACKAGE}.store", f"{PACKAGE}.group"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "import fedgroups.reader.group\n"
        "if TYPE_CHECKING:\n"
        "    from fedgroups.reader.dataset import GroupedDataset\n"
        "def f():\n"
        "    from . import store\n")
    got = imports_of(f"{PACKAGE}.chunks", ast.parse(source), modules)
    assert got == {DATASET, f"{PACKAGE}.store", f"{PACKAGE}.group", PACKAGE}


def test_no_module_reaches_into_another_modules_private_members():
    # obj._name is fine where obj is self/cls, or where this module defines _name itself
    trouble = []
    for name, tree in _trees().items():
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
               and isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")}
        own |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                                  ast.ClassDef))}
        own |= {n.target.id for n in ast.walk(tree)  # dataclass fields
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr not in own):
                trouble.append(f"{name}:{node.lineno} .{node.attr}")
    assert not trouble, trouble


def test_groups_are_made_only_by_group_make():
    # object.__new__ fills slots by hand: only group.py's Group.make may do it
    trouble = []
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "__new__"
                    and name != f"{PACKAGE}.group"):
                trouble.append(f"{name}:{node.lineno}")
    assert not trouble, trouble
