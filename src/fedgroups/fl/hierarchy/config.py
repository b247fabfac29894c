"""The ``hierarchy:`` section of a run config, and each node's resolved settings.

A node's settings come from four layers, later ones winning: the defaults (from the
top-level config: a leaf federation aggregates clients with the top-level ``server`` and
``cohort_size``; a federation of federations averages all its children with server SGD,
lr 1), ``hierarchy.level_settings[depth]``, the node's own entry in ``hierarchy.nodes``
(explicit trees), and ``hierarchy.node_settings[name or path]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from fedgroups.errors import FedGroupsError
from fedgroups.fl.config import (
    ConfigError,
    ServerConfig,
    TrainConfig,
    WeightingName,
    from_dict,
    to_dict,
)

MethodName = Literal["fl", "hierfavg", "fedper", "local", "worldlm", "worldlm-noresidual",
                     "worldlm-mean"]
METHODS: tuple[str, ...] = MethodName.__args__  # type: ignore[attr-defined]


class HierarchyError(FedGroupsError, ValueError):
    """The tree or a node's settings cannot be used as given (names the node and setting)."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """Client-level DP of a leaf federation: clip each client's update, noise on the sum."""

    clip_norm: float  # C: L2 bound of one client's update (B and K together)
    noise_multiplier: float  # sigma: noise std is sigma * C on the sum of updates
    delta: float = 1e-5  # epsilon is reported at this delta

    def check(self, where: str) -> None:
        """Checked when a node resolves its settings, so the message names the node."""
        for ok, message in (
            (self.clip_norm > 0, f"privacy.clip_norm must be > 0; got {self.clip_norm}"),
            (self.noise_multiplier >= 0,
             f"privacy.noise_multiplier must be >= 0; got {self.noise_multiplier}"),
            (0 < self.delta < 1, f"privacy.delta must be in (0, 1); got {self.delta}"),
        ):
            if not ok:
                raise HierarchyError(f"{where}: {message}")


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """Per-node overrides; None = inherit (see the module docstring)."""

    rounds: int | None = None  # rounds per round of the parent (the root: top-level rounds)
    cohort_size: int | None = None  # children sampled per round
    server: ServerConfig | None = None
    weighting: WeightingName | None = None
    tau: float | None = None
    privacy: PrivacyConfig | None = None

    def __post_init__(self) -> None:
        _check(self.rounds is None or self.rounds >= 1, f"rounds must be >= 1; got {self.rounds}")
        _check(self.cohort_size is None or self.cohort_size >= 1,
               f"cohort_size must be >= 1; got {self.cohort_size}")
        _check(self.tau is None or self.tau > 0, f"tau must be > 0; got {self.tau}")


@dataclass(frozen=True, kw_only=True)
class NodeSpec(NodeSettings):
    """One node of an explicit tree: a federation of ``children`` or a leaf of ``keys``."""

    name: str
    children: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # fnmatch globs over group keys of ``dataset``
    dataset: str | None = None  # default: data.path


@dataclass(frozen=True, kw_only=True)
class HierarchyConfig:
    method: MethodName = "worldlm"
    levels: tuple[str, ...] = ()
    nodes: tuple[NodeSpec, ...] = ()
    root: str = "world"
    key_params: tuple[str, ...] | None = None  # None: the last transformer block
    tau: float = 0.1
    residuals: int = 1  # nu
    eval_fraction: float = 0.2
    eval_seed: int = 0
    eval_max_clients: int = 16
    level_settings: tuple[NodeSettings, ...] = ()
    node_settings: dict[str, NodeSettings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.levels) != bool(self.nodes),
               "hierarchy: give exactly one of 'levels' (tree from the data's group columns) "
               "or 'nodes' (an explicit tree)")
        _check(self.tau > 0, f"hierarchy.tau must be > 0; got {self.tau}")
        _check(self.residuals >= 0, f"hierarchy.residuals must be >= 0; got {self.residuals}")
        _check(0 <= self.eval_fraction < 1,
               f"hierarchy.eval_fraction must be in [0, 1); got {self.eval_fraction}")
        _check(self.eval_max_clients >= 1, "hierarchy.eval_max_clients must be >= 1")
        _check(len(set(self.levels)) == len(self.levels),
               f"hierarchy.levels has a repeated column: {list(self.levels)}")


def parse_hierarchy(data: Mapping[str, Any]) -> HierarchyConfig:
    """Strictly parse the ``hierarchy:`` mapping (errors name ``hierarchy.<setting>``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"setting 'hierarchy' must be a mapping; got {data!r}")
    hierarchy = from_dict(HierarchyConfig, dict(data), prefix="hierarchy.")
    _check_finite_privacy(hierarchy)
    return hierarchy


def _check_finite_privacy(hierarchy: HierarchyConfig) -> None:
    """Non-finite DP settings are refused when parsed: an infinite sigma would train a round
    and then stop as "non-finite loss"; a NaN passes every range check."""
    layers: list[tuple[str, NodeSettings]] = [
        *((f"level_settings.{i}", s) for i, s in enumerate(hierarchy.level_settings)),
        *((f"nodes.{i}", s) for i, s in enumerate(hierarchy.nodes)),
        *((f"node_settings.{k}", s) for k, s in hierarchy.node_settings.items())]
    for where, layer in layers:
        p = layer.privacy
        if p is None:
            continue
        for name, value, ok in (("noise_multiplier", p.noise_multiplier,
                                 math.isfinite(p.noise_multiplier)),
                                ("clip_norm", p.clip_norm, not math.isnan(p.clip_norm)),
                                ("delta", p.delta, math.isfinite(p.delta))):
            _check(ok, f"hierarchy.{where}.privacy.{name} must be a finite number; got {value}")


def resolved_config_dict(config: TrainConfig, hierarchy: HierarchyConfig) -> dict[str, Any]:
    """The run's config as saved in ``config.yaml``: every default, the hierarchy included."""
    out = to_dict(config)
    out["hierarchy"] = to_dict(hierarchy)
    return out


# --- per-node settings -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Settings:
    """A node's resolved settings."""

    rounds: int
    cohort_size: int  # capped at the number of children when sampling
    server: ServerConfig
    weighting: WeightingName
    tau: float
    privacy: PrivacyConfig | None


_AVERAGE = ServerConfig(optimizer="sgd", lr=1.0)
ALL_CHILDREN = 1 << 30  # cohort_size default of a federation of federations


def _overlay(base: dict[str, Any], layer: NodeSettings | None) -> set[str]:
    """Copy ``layer``'s non-None settings into ``base``; return their names."""
    if layer is None:
        return set()
    given = {f.name for f in fields(NodeSettings) if getattr(layer, f.name) is not None}
    base.update({n: getattr(layer, n) for n in given})
    return given


def resolve_settings(*, name: str, path: str, level: int, is_leaf: bool,
                     inline: NodeSettings | None, hierarchy: HierarchyConfig,
                     config: TrainConfig) -> Settings:
    """Merge defaults < level_settings[level] < inline < node_settings[name | path]."""
    values: dict[str, Any] = {
        "rounds": 1,
        "cohort_size": config.cohort_size if is_leaf else ALL_CHILDREN,
        "server": config.server if is_leaf else _AVERAGE,
        "weighting": None,
        "tau": hierarchy.tau,
        "privacy": None,
    }
    levels = hierarchy.level_settings
    given: set[str] = set()
    for layer in (levels[level] if level < len(levels) else None, inline,
                  hierarchy.node_settings.get(name), hierarchy.node_settings.get(path)):
        given |= _overlay(values, layer)
    if level == 0:
        if "rounds" in given:
            raise HierarchyError(
                f"node {path!r}: the root runs the top-level 'rounds' ({config.rounds}); "
                "remove its 'rounds' setting"
            )
        values["rounds"] = config.rounds
    privacy = values["privacy"]
    if privacy is not None:
        privacy.check(f"node {path!r}")
        if not is_leaf:
            raise HierarchyError(
                f"node {path!r}: privacy is client-level, so it is set on leaf federations "
                "(whose children are clients), not on a federation of federations"
            )
        if values["weighting"] not in (None, "uniform"):
            raise HierarchyError(
                f"node {path!r}: privacy needs weighting 'uniform' (each client weighs 1, so "
                f"the sum's sensitivity is clip_norm); got {values['weighting']!r}"
            )
        values["weighting"] = "uniform"
    if values["weighting"] is None:
        values["weighting"] = config.algorithm.weighting
    return Settings(**values)


def settings_dict(settings: Settings) -> dict[str, Any]:
    out = to_dict(settings)
    if settings.cohort_size >= ALL_CHILDREN:
        out["cohort_size"] = None  # all children
    return out
