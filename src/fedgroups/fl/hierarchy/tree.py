"""The tree of federations: from group columns (``levels``) or an explicit node list.

Both builders are pure functions of their inputs (a ``pyarrow.Table`` of group columns, or
node specs plus a function listing a dataset's keys) and return a :class:`Node`: the root,
whose descendants are federations and whose leaves are *leaf federations* holding the
group keys of their clients.

>>> import pyarrow as pa
>>> t = pa.table({"key": ["d1", "d2", "d3"], "family": ["romance", "romance", "slavic"],
...               "lang": ["es", "fr", "ru"]})
>>> root = tree_from_table(t, ["family", "lang"], root="world", dataset="out/w")
>>> [(n.path, n.keys) for n in root.leaves()]
[('world/romance/es', ('d1',)), ('world/romance/fr', ('d2',)), ('world/slavic/ru', ('d3',))]
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedgroups.fl.hierarchy.config import HierarchyConfig, HierarchyError, NodeSettings, NodeSpec


@dataclass(frozen=True, kw_only=True)
class Node:
    name: str
    path: str  # names from the root joined by "/"
    level: int  # 0 = root
    children: tuple[Node, ...] = ()  # federations; empty for a leaf federation
    dataset: str = ""  # leaf: the grouped dataset its clients come from
    keys: tuple[Any, ...] = ()  # leaf: its clients' group keys, sorted
    inline: NodeSettings | None = None  # settings written on the node (explicit trees)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> Iterator[Node]:
        """This node and its descendants, parents before children, children in order."""
        yield self
        for c in self.children:
            yield from c.walk()

    def leaves(self) -> list[Node]:
        return [n for n in self.walk() if n.is_leaf]


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise HierarchyError(f"{where}: node name {name!r} must be a non-empty string "
                             "without '/' (paths join names with '/')")
    return name


def tree_from_table(table: Any, levels: Sequence[str], *, root: str, dataset: str) -> Node:
    """root -> levels[0] values -> ... -> levels[-1] values (leaves) -> groups (``key``)."""
    _check_name(root, "hierarchy.root")
    missing = [c for c in ("key", *levels) if c not in table.column_names]
    if missing:
        raise HierarchyError(
            f"hierarchy.levels: column(s) {missing} not among the group columns of {dataset!r} "
            f"({[c for c in table.column_names if c != 'key']}); build the dataset with "
            f"--group-columns {','.join(levels)}"
        )
    if table.num_rows == 0:
        raise HierarchyError(f"hierarchy: dataset {dataset!r} has no groups: empty federation")
    keys = table.column("key").to_pylist()
    columns = [table.column(c).to_pylist() for c in levels]
    nested: dict[Any, Any] = {}
    for i, key in enumerate(keys):
        node = nested
        for c, col in zip(levels, columns):
            value = col[i]
            if value is None or value == "":
                raise HierarchyError(f"hierarchy.levels: group {key!r} has no value in column "
                                     f"{c!r}; every group needs one to be placed in the tree")
            node = node.setdefault(_check_name(str(value), f"hierarchy.levels ({c!r}, group "
                                                          f"{key!r})"), {})
        node.setdefault(None, []).append(key)

    def build(name: str, path: str, level: int, sub: dict[Any, Any]) -> Node:
        if level == len(levels):
            return Node(name=name, path=path, level=level, dataset=dataset,
                        keys=tuple(sorted(sub[None], key=str)))
        children = tuple(build(k, f"{path}/{k}", level + 1, sub[k]) for k in sorted(sub))
        return Node(name=name, path=path, level=level, children=children)

    return build(root, root, 0, nested)


def tree_from_nodes(specs: Sequence[NodeSpec], keys_of: Callable[[str], Sequence[Any]], *,
                    default_dataset: str) -> Node:
    """The tree an explicit node list describes (``keys_of(dataset)``: its sorted keys)."""
    by_name: dict[str, NodeSpec] = {}
    for i, spec in enumerate(specs):
        _check_name(spec.name, f"hierarchy.nodes.{i}.name")
        if spec.name in by_name:
            raise HierarchyError(f"hierarchy.nodes: duplicate node name {spec.name!r}")
        by_name[spec.name] = spec
    parent_of: dict[str, str] = {}
    for spec in specs:
        where = f"hierarchy.nodes ({spec.name!r})"
        if spec.children and spec.keys:
            raise HierarchyError(f"{where}: give 'children' (a federation of federations) or "
                                 "'keys' (a leaf federation of groups), not both")
        if not spec.children and not spec.keys:
            raise HierarchyError(f"{where}: empty federation: it has neither 'children' nor "
                                 "'keys'")
        if spec.dataset is not None and spec.children:
            raise HierarchyError(f"{where}: 'dataset' belongs on leaf federations (with 'keys')")
        for child in spec.children:
            if child not in by_name:
                raise HierarchyError(f"{where}: unknown child {child!r}; nodes are "
                                     f"{sorted(by_name)}")
            if child in parent_of:
                raise HierarchyError(f"hierarchy.nodes: {child!r} is listed as a child twice "
                                     f"(by {parent_of[child]!r} and {spec.name!r})")
            parent_of[child] = spec.name
    roots = [s.name for s in specs if s.name not in parent_of]
    if len(roots) != 1:
        cycle = _find_cycle(by_name) if not roots else None
        if cycle:
            raise HierarchyError(f"hierarchy.nodes: cycle {' -> '.join(cycle)}")
        raise HierarchyError(f"hierarchy.nodes: need exactly one root (a node nobody lists as "
                             f"a child); found {roots or 'none'}")
    cycle = _find_cycle(by_name)
    if cycle:
        raise HierarchyError(f"hierarchy.nodes: cycle {' -> '.join(cycle)}")

    owner: dict[tuple[str, Any], str] = {}
    cache: dict[str, Sequence[Any]] = {}

    def build(name: str, path: str, level: int) -> Node:
        spec = by_name[name]
        inline = NodeSettings(**{f: getattr(spec, f) for f in NodeSettings.__dataclass_fields__})
        if spec.children:
            kids = tuple(build(c, f"{path}/{c}", level + 1) for c in spec.children)
            return Node(name=name, path=path, level=level, children=kids, inline=inline)
        dataset = spec.dataset if spec.dataset is not None else default_dataset
        if dataset not in cache:
            cache[dataset] = keys_of(dataset)
        chosen = tuple(k for k in cache[dataset]
                       if any(fnmatch.fnmatchcase(str(k), g) for g in spec.keys))
        if not chosen:
            raise HierarchyError(f"node {path!r}: keys {list(spec.keys)} select no group of "
                                 f"dataset {dataset!r}")
        for k in chosen:
            other = owner.setdefault((dataset, k), path)
            if other != path:
                raise HierarchyError(f"group {k!r} of {dataset!r} is selected by two leaf "
                                     f"federations, {other!r} and {path!r}; a client belongs "
                                     "to one federation")
        return Node(name=name, path=path, level=level, dataset=dataset, keys=chosen,
                    inline=inline)

    return build(roots[0], roots[0], 0)


def _find_cycle(by_name: dict[str, NodeSpec]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for c in by_name[name].children:
            if state.get(c) == 1:
                return [*path[path.index(c):], c] if c in path else [*path, c]
            if c not in state:
                found = visit(c, [*path, c])
                if found:
                    return found
        state[name] = 2
        return None

    for name in by_name:
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def check_overrides(root: Node, hierarchy: HierarchyConfig) -> None:
    """``node_settings`` names must exist; ``level_settings`` must not exceed the depth."""
    names = {n.name for n in root.walk()} | {n.path for n in root.walk()}
    unknown = sorted(set(hierarchy.node_settings) - names)
    if unknown:
        raise HierarchyError(f"hierarchy.node_settings: no node named {unknown}; nodes are "
                             f"{sorted(n.path for n in root.walk())}")
    depth = max(n.level for n in root.walk())
    if len(hierarchy.level_settings) > depth + 1:
        raise HierarchyError(f"hierarchy.level_settings has {len(hierarchy.level_settings)} "
                             f"entries; the tree has levels 0..{depth}")


def split_eval(keys: Sequence[Any], fraction: float, seed: int, path: str
               ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(train, held-out) keys of one leaf: a seeded split, a pure function of its inputs.

    At least one held-out group when ``fraction > 0`` and the leaf has two groups or more;
    never all of them.
    """
    n = len(keys)
    n_eval = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(n * fraction)))
    words = [seed, *path.encode()]
    order = np.random.default_rng(np.random.SeedSequence(words)).permutation(n)
    held = set(order[:n_eval].tolist())
    train = tuple(k for i, k in enumerate(keys) if i not in held)
    return train, tuple(k for i, k in enumerate(keys) if i in held)


_INDEXED = re.compile(r"^(.*?)\.(\d+)\.")


def default_key_globs(names: Sequence[str]) -> tuple[str, ...]:
    """The last transformer block: ``PREFIX.N.*`` for the longest numbered module list.

    ``blocks.1.*`` for fedgroups' Transformer, ``transformer.h.11.*`` for GPT-2,
    ``model.layers.31.*`` for Llama.
    """
    indices: dict[str, set[int]] = {}
    for n in names:
        m = _INDEXED.match(n)
        if m:
            indices.setdefault(m.group(1), set()).add(int(m.group(2)))
    if not indices:
        raise HierarchyError("hierarchy.key_params: the model has no numbered blocks to take "
                             "the last one from; name the key layers with parameter globs")
    prefix = max(indices, key=lambda p: (len(indices[p]), p))
    return (f"{prefix}.{max(indices[prefix])}.*",)


def key_param_names(names: Sequence[str], globs: Sequence[str]) -> list[str]:
    """Parameter names matching ``globs``; an error if a glob matches nothing or all match."""
    for g in globs:
        if not any(fnmatch.fnmatchcase(n, g) for n in names):
            raise HierarchyError(f"hierarchy.key_params: {g!r} matches no parameter; names "
                                 f"look like {list(names[:4])} ...")
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if len(chosen) == len(names):
        raise HierarchyError(f"hierarchy.key_params {list(globs)} match every parameter: "
                             "nothing would be left to share (use method 'local' for that)")
    return chosen
