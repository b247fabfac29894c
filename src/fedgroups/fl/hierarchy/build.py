"""From config to runnable tree: data, the tree, the method's switches, the FedNodes.

Every method runs through the same :class:`~fedgroups.fl.hierarchy.node.FedNode` code;
a method only sets three switches and, for ``fl``, flattens the tree:

=====================  ===================  ==========  =========  ==========================
method                 key layers K         mixing of K  residuals  tree
=====================  ===================  ==========  =========  ==========================
``fl``                 none                 -           -          one federation of all clients
``hierfavg``           none                 -           -          as configured
``fedper``             ``key_params``       none        no         as configured
``local``              every parameter      none        no         as configured (B is empty)
``worldlm``            ``key_params``       attention   nu         as configured
``worldlm-noresidual`` ``key_params``       attention   no         as configured
``worldlm-mean``       ``key_params``       mean        nu         as configured
=====================  ===================  ==========  =========  ==========================

Equal compute: ``fl`` runs ``rounds * P`` rounds of ``round(U / P)`` clients, where P is the
largest number of sequential leaf rounds per root round on a path of the tree and U the
expected number of client updates per root round of the tree, so every method makes the
same number of client updates (exactly, when every federation takes all its children).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from fedgroups.fl import datasets
from fedgroups.fl.config import DatasetConfig, TrainConfig
from fedgroups.fl.hierarchy.config import (
    HierarchyConfig,
    HierarchyError,
    Settings,
    resolve_settings,
)
from fedgroups.fl.hierarchy.node import FedNode, MixMode, Shared
from fedgroups.fl.hierarchy.privacy import make_processor
from fedgroups.fl.hierarchy.tree import (
    Node,
    check_overrides,
    default_key_globs,
    key_param_names,
    split_eval,
    tree_from_nodes,
    tree_from_table,
)
from fedgroups.fl.strategy import Strategy, strategy_from_config

MIX: dict[str, MixMode] = {"worldlm": "attention", "worldlm-noresidual": "attention",
                           "worldlm-mean": "mean"}
USES_RESIDUALS = ("worldlm", "worldlm-mean")


@dataclass(frozen=True)
class Leaf:
    """A leaf federation of the configured tree, with its train / held-out clients."""

    node: Node
    settings: Settings
    train: tuple[tuple[Any, Any], ...]  # (dataset, key)
    held_out: tuple[tuple[Any, Any], ...]


@dataclass(frozen=True)
class Plan:
    tree: Node  # the configured tree (with all keys)
    settings: dict[str, Settings]  # by path
    leaves: list[Leaf]
    sources: dict[str, datasets.GroupSource]  # by dataset path


def load_plan(config: TrainConfig, hierarchy: HierarchyConfig) -> Plan:
    """Open the data, build the tree, resolve every node's settings, split held-out groups."""
    if config.algorithm.local_params:
        raise HierarchyError("algorithm.local_params is for flat runs; a hierarchical run "
                             "names its key layers in hierarchy.key_params")
    if config.eval.datasets:
        raise HierarchyError("eval.datasets is not used by a hierarchical run: each leaf "
                             "federation is evaluated on its own held-out groups "
                             "(hierarchy.eval_fraction); remove eval.datasets")
    primary = datasets.open_source(config.data, "data")
    sources = {config.data.path: primary}

    def source_of(path: str) -> datasets.GroupSource:
        if path not in sources:
            sources[path] = datasets.open_source(
                DatasetConfig(path=path, text_column=config.data.text_column), path)
        return sources[path]

    if hierarchy.levels:
        tree = tree_from_table(_group_table(primary, hierarchy.levels), hierarchy.levels,
                               root=hierarchy.root, dataset=config.data.path)
    else:
        tree = tree_from_nodes(hierarchy.nodes, lambda p: source_of(p).keys,
                               default_dataset=config.data.path)
    check_overrides(tree, hierarchy)
    settings = {n.path: resolve_settings(name=n.name, path=n.path, level=n.level,
                                         is_leaf=n.is_leaf, inline=n.inline,
                                         hierarchy=hierarchy, config=config)
                for n in tree.walk()}
    leaves = []
    for n in tree.leaves():
        train, held = split_eval(n.keys, hierarchy.eval_fraction, hierarchy.eval_seed, n.path)
        if not train:
            raise HierarchyError(f"node {n.path!r}: no training group left (empty federation)")
        ds = source_of(n.dataset).dataset
        leaves.append(Leaf(node=n, settings=settings[n.path],
                           train=tuple((ds, k) for k in train),
                           held_out=tuple((ds, k) for k in held[: hierarchy.eval_max_clients])))
    return Plan(tree=tree, settings=settings, leaves=leaves, sources=sources)


def _group_table(source: datasets.GroupSource, levels: tuple[str, ...]) -> Any:
    ds = source.dataset
    if not hasattr(ds, "group_table"):
        raise HierarchyError(f"hierarchy.levels: dataset {source.name!r} has no group columns "
                             "(build it with --group-columns)")
    table = ds.group_table(list(levels))
    if len(source.keys) != table.num_rows:  # data.keys filtered some groups out
        import pyarrow as pa
        import pyarrow.compute as pc

        keep = pa.array([str(k) for k in source.keys])
        table = table.filter(pc.is_in(pc.cast(table.column("key"), pa.string()), keep))
    return table


def key_names(names: list[str], hierarchy: HierarchyConfig) -> list[str]:
    """The method's key layers K (globs are validated for every method alike)."""
    chosen = key_param_names(names, hierarchy.key_params or default_key_globs(names))
    if hierarchy.method in ("fl", "hierfavg"):
        return []
    if hierarchy.method == "local":
        return list(names)
    return chosen


def flat_budget(plan: Plan) -> tuple[int, int]:
    """(P, U): sequential leaf rounds per root round, expected client updates per root round."""
    def updates(node: Node) -> float:  # expected client updates in one participation
        s = plan.settings[node.path]
        rounds = 1 if node.level == 0 else s.rounds
        if node.is_leaf:
            n = len(next(lf.train for lf in plan.leaves if lf.node.path == node.path))
            return rounds * min(s.cohort_size, n)
        share = min(s.cohort_size, len(node.children)) / len(node.children)
        return rounds * share * sum(updates(c) for c in node.children)

    def depth_rounds(node: Node) -> int:
        own = 1 if node.level == 0 else plan.settings[node.path].rounds
        return own * (1 if node.is_leaf else max(depth_rounds(c) for c in node.children))

    return depth_rounds(plan.tree), max(1, round(updates(plan.tree)))


def build_nodes(plan: Plan, config: TrainConfig, hierarchy: HierarchyConfig, shared: Shared,
                init: dict[str, Any], strategy: Strategy | None = None,
                ) -> tuple[FedNode, dict[str, Settings]]:
    """The runnable tree for ``hierarchy.method`` and the settings each node uses.

    For ``fl`` the runner calls the root's ``run_round`` P times per outer round.  Every
    leaf federation gets its own strategy (its own algorithm state and processor
    counters): built from the config, or a copy of ``strategy`` when one is passed in.
    Sub-federations' deltas are averaged as given (weighting and the node's DP only).
    """

    def leaf_strategy() -> Strategy:
        return strategy_from_config(config) if strategy is None else copy.deepcopy(strategy)

    base = leaf_strategy()
    if hierarchy.method == "fl":
        p, u = flat_budget(plan)
        root = plan.tree
        s = dataclasses.replace(resolve_settings(
            name=root.name, path=root.path, level=0, is_leaf=True, inline=None,
            hierarchy=hierarchy, config=config), cohort_size=max(1, round(u / p)))
        clients = tuple(c for lf in plan.leaves for c in lf.train)
        node = FedNode(path=root.path, level=0, settings=s, shared=shared,
                       strategy=dataclasses.replace(base, weighting=s.weighting),
                       clients=clients, init=init, total_rounds=config.rounds * p,
                       is_root=True)
        return node, {root.path: s}

    train = {lf.node.path: lf.train for lf in plan.leaves}

    def make(node: Node, total: int) -> FedNode:
        s = plan.settings[node.path]
        total = total * (1 if node.level == 0 else s.rounds)
        dp = make_processor(s.privacy) if s.privacy is not None else None
        if node.is_leaf:
            own = leaf_strategy()
            own = dataclasses.replace(own, weighting=s.weighting,
                                      processors=own.processors + ((dp,) if dp else ()))
        else:  # sub-federations' deltas, as given
            own = Strategy(weighting=s.weighting, processors=(dp,) if dp else ())
        return FedNode(path=node.path, level=node.level, settings=s, shared=shared,
                       strategy=own, dp=dp,
                       children=[make(c, total) for c in node.children],
                       clients=train.get(node.path, ()), init=init, total_rounds=total,
                       is_root=node.level == 0)

    return make(plan.tree, config.rounds), dict(plan.settings)
