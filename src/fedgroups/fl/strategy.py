"""What happens to participants' updates in a round: weight, process, aggregate, server step.

A :class:`Strategy` is the federated algorithm as a few small pieces (after pfl-research,
where privacy and clipping are postprocessors in a chain rather than subclasses):

* ``algorithm`` (``fl/algorithm.py``) trains one participant from the global weights and
  what the server sends it (FedAvg: local optimizer steps; FedSGD: one full-batch
  gradient; FedProx, SCAFFOLD, ... in ``fl/algos/``) and returns a ``ClientUpdate``;
* ``selection`` picks each round's cohort (default: uniform without replacement, a pure
  function of (seed, round); ``power_of_choice`` in ``fl/algos/selection.py``);
* ``weighting`` says how much that update counts (``"tokens"``, ``"examples"``,
  ``"uniform"`` or a function of the update);
* ``processors`` transform each participant's delta (:meth:`UpdateProcessor.process_update`:
  clip, compress) and then the weighted **sum** of deltas before it is divided by the total
  weight (:meth:`UpdateProcessor.process_aggregate`: add noise);
* ``aggregator`` builds the object that accumulates deltas (default: the running weighted
  sum of ``fl/algorithms.py``, memory = one model whatever the cohort); a robust one
  (median, trimmed mean) may keep every delta and return its estimate times the weight;
* ``server`` builds the server optimizer that turns the mean delta into a step (FedOpt).

Built-ins go through the same interface a user's code does::

    strategy:
      processors:
        - {name: clip, max_norm: 1.0}                 # a built-in from PROCESSORS
        - {factory: "mypkg.privacy:make", sigma: 0.5} # any importable function + kwargs

The processors themselves and the :class:`RoundContext` they see are in
``fl/processors.py`` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch

from fedgroups.fl.algorithm import Algorithm, make_algorithm
from fedgroups.fl.algorithms import Aggregator, ClientUpdate, Params, Server
from fedgroups.fl.config import ConfigError, OptimizerConfig, TrainConfig, WeightingName
from fedgroups.fl.plugins import load_callable
from fedgroups.fl.processors import (  # re-exported: the names users subclass and import
    GaussianDP,
    NormClip,
    Processor,
    RoundContext,
    UpdateProcessor,
    global_norm,
)
from fedgroups.fl.servers import make_server

__all__ = ["GaussianDP", "NormClip", "Processor", "RoundContext", "Selection", "Strategy",
           "UpdateProcessor", "global_norm", "make_aggregator", "make_processor",
           "make_selection", "strategy_from_config", "uniform_selection"]

Weighting = WeightingName | Callable[[ClientUpdate], float]
AggregatorFactory = Callable[[Mapping[str, torch.Tensor]], Aggregator]
ServerFactory = Callable[[Mapping[str, torch.Tensor], OptimizerConfig], Server]


class Selection(Protocol):
    """Picks a round's cohort: ``cohort_size`` distinct indices in ``range(num_members)``.

    ``probe(i)`` is the current global model's mean loss on member ``i``'s data (a forward
    pass; None when the members are sub-federations, which have no data of their own).
    """

    def __call__(self, num_members: int, cohort_size: int, ctx: RoundContext,
                 probe: Callable[[int], float] | None) -> list[int]: ...


def uniform_selection(num_members: int, cohort_size: int, ctx: RoundContext,
                      probe: Callable[[int], float] | None = None) -> list[int]:
    """``min(cohort_size, num_members)`` indices without replacement, from (seed, round)."""
    rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, ctx.round]))
    return rng.choice(num_members, size=min(cohort_size, num_members), replace=False).tolist()


# Built-ins by the ``name`` a config entry gives, as "module:callable" (imported when used);
# the entry's other keys are the callable's keyword arguments.
PROCESSORS: dict[str, str] = {
    "clip": "fedgroups.fl.processors:NormClip",
    "dp": "fedgroups.fl.processors:GaussianDP",
    "dp_adaptive": "fedgroups.fl.algos.dp_adaptive:AdaptiveClipDP",
}
AGGREGATORS: dict[str, str] = {
    "mean": "fedgroups.fl.algorithms:Aggregator",
    "median": "fedgroups.fl.algos.robust:Median",
    "trimmed_mean": "fedgroups.fl.algos.robust:TrimmedMean",
    "krum": "fedgroups.fl.algos.robust:Krum",
}
SELECTIONS: dict[str, str] = {
    "uniform": "fedgroups.fl.strategy:uniform_selection",
    "power_of_choice": "fedgroups.fl.algos.selection:PowerOfChoice",
}
# Processors whose guarantee assumes the aggregate is the plain weighted sum.
DP_PROCESSORS = ("dp", "dp_adaptive")


@dataclass(frozen=True, kw_only=True)
class Strategy:
    algorithm: Algorithm = dataclasses.field(default_factory=Algorithm)
    weighting: Weighting = "tokens"
    processors: tuple[UpdateProcessor, ...] = ()
    aggregator: AggregatorFactory = Aggregator
    server: ServerFactory | None = None  # None: the algorithm's / server.optimizer's rule
    selection: Selection = uniform_selection

    def make_server(self, params: Mapping[str, torch.Tensor], config: OptimizerConfig
                    ) -> Server:
        """The server optimizer over ``params``: ``server`` if given, else the rule the
        algorithm implies (FedAdam, ...), else ``config.optimizer``."""
        if self.server is not None:
            return self.server(params, config)
        return make_server(params, config, self.algorithm.server_optimizer)

    def check(self, *, cohort_size: int, seed: int, backend_world_size: int = 1,
              client: Any = None) -> None:
        """What can be checked before a run starts: the selection rule on a dry run (round 0
        of a pool twice the cohort, every probe 0.0), client state across ranks, and the
        client settings the algorithm needs."""
        if client is not None and callable(getattr(self.algorithm, "check_client", None)):
            self.algorithm.check_client(client)
        members = max(2 * cohort_size, 2)
        self.select(members, cohort_size, RoundContext(round=0, seed=seed,
                                                       num_members=members),
                    lambda i: 0.0, dry=True)
        for piece in (*self.processors, self.aggregator({})):
            check = getattr(piece, "check", None)
            if callable(check):  # e.g. Krum's 2f + 3, dp_adaptive's count noise
                check(cohort_size=cohort_size, backend_world_size=backend_world_size)
        if self.algorithm.client_state and backend_world_size > 1:
            raise ConfigError(
                f"algorithm {self.algorithm.name!r} keeps per-client state and needs backend "
                "'sequential' (ranks train different clients every round, so a client's "
                "state would be on another rank); run without --backend distributed")

    def select(self, num_members: int, cohort_size: int, ctx: RoundContext,
               probe: Callable[[int], float] | None, dry: bool = False) -> list[int]:
        """The cohort, checked: distinct indices of existing members."""
        chosen = [int(i) for i in self.selection(num_members, cohort_size, ctx, probe)]
        bad = [i for i in chosen if not 0 <= i < num_members]
        if bad or len(set(chosen)) != len(chosen) or not chosen and num_members:
            what = (f"unknown member(s) {bad[:5]}" if bad else
                    "duplicates" if len(set(chosen)) != len(chosen) else "no member")
            raise ConfigError(
                f"strategy.selection {getattr(self.selection, '__name__', self.selection)!r} "
                f"returned {what} ("
                + ("a dry run before the run starts" if dry else f"round {ctx.round + 1}")
                + f", {num_members} members); it must return "
                "distinct indices in range(num_members)")
        return chosen

    def weight(self, update: ClientUpdate) -> float:
        if callable(self.weighting):
            return float(self.weighting(update))
        return update.weight(self.weighting)

    def process_update(self, update: ClientUpdate, ctx: RoundContext
                       ) -> Iterable[tuple[str, torch.Tensor]]:
        """The participant's delta after every processor (lazy when there are none)."""
        if not self.processors:
            return update.delta
        delta = dict(update.delta)
        for p in self.processors:
            delta = p.process_update(delta, update, ctx)
        return delta.items()

    def mean_delta(self, aggregate: Aggregator, ctx: RoundContext) -> Params:
        """Processed weighted sum divided by the total weight: what the server steps on."""
        total = aggregate.total()
        stats = aggregate.stats_dict()
        for p in self.processors:
            total = p.process_aggregate(total, stats, ctx)
        w = stats["weight"]
        if w <= 0:
            raise ValueError("no client contributed to this round")
        return {n: t / w for n, t in total.items()}

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.processors:
            out.update(p.metrics())
        return out

    def state_dict(self) -> list[dict[str, Any]]:
        return [p.state_dict() for p in self.processors]

    def load_state_dict(self, state: Sequence[Mapping[str, Any]]) -> None:
        if len(state) != len(self.processors):
            raise ConfigError(
                f"the checkpoint has state for {len(state)} strategy processor(s), the config "
                f"names {len(self.processors)}: keep strategy.processors as the run had them"
            )
        for p, s in zip(self.processors, state):
            p.load_state_dict(s)


def _resolve(entry: Mapping[str, Any], where: str, builtins: Mapping[str, str],
             what: str) -> tuple[Callable[..., Any], dict[str, Any], str]:
    """(callable, kwargs, label) of ``{name: ...}`` (a built-in) or ``{factory: "m:f"}``."""
    entry = dict(entry)
    name, factory = entry.pop("name", None), entry.pop("factory", None)
    if (name is None) == (factory is None):
        raise ConfigError(f"{where}: give exactly one of 'name' (one of {sorted(builtins)}) "
                          "or 'factory' ('package.module:function')")
    if name is not None:
        if name not in builtins:
            raise ConfigError(f"{where}: unknown {what} {name!r}; built-ins: "
                              f"{', '.join(sorted(builtins))} (or use factory: 'pkg.mod:fn')")
        return load_callable(builtins[name], f"{where}.name"), entry, name
    return load_callable(factory, f"{where}.factory"), entry, factory


def _check_settings(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    from fedgroups.fl.algorithm import valid_settings

    readable = valid_settings(fn)
    valid = [v for v in readable if v != "template"]
    unknown = sorted(set(kwargs) - set(valid)) if readable else []
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(valid) or '(none)'}")


def _call(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> Any:
    _check_settings(fn, kwargs, where)
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def make_processor(entry: Mapping[str, Any], where: str) -> UpdateProcessor:
    """A processor from a config entry: ``{name: clip, ...}`` or ``{factory: "m:f", ...}``."""
    fn, kwargs, label = _resolve(entry, where, PROCESSORS, "processor")
    proc = _call(fn, kwargs, where)
    if not all(callable(getattr(proc, m, None)) for m in ("process_update", "process_aggregate")):
        raise ConfigError(f"{where}: {label} returned {type(proc).__name__}, not an "
                          "update processor (subclass fedgroups.fl.strategy.Processor)")
    return proc


def make_aggregator(entry: Mapping[str, Any], where: str) -> AggregatorFactory:
    """``{name: median}`` / ``{factory: "m:f", ...}``: ``fn(template, **kwargs)``."""
    fn, kwargs, _ = _resolve(entry, where, AGGREGATORS, "aggregator")
    if not kwargs:
        return fn
    _check_settings(fn, kwargs, where)
    try:
        fn({}, **kwargs)  # settings are checked now, not in the first round
    except (TypeError, ValueError, ConfigError) as e:
        raise ConfigError(f"{where}: {e}") from None
    return partial(fn, **kwargs)


def make_selection(entry: Mapping[str, Any], where: str) -> Selection:
    fn, kwargs, label = _resolve(entry, where, SELECTIONS, "selection")
    if fn is uniform_selection:
        if kwargs:
            raise ConfigError(f"{where}: uniform takes no settings; got {sorted(kwargs)}")
        return uniform_selection
    sel = _call(fn, kwargs, where)
    if not callable(sel):
        raise ConfigError(f"{where}: {label} returned {type(sel).__name__}, not a selection "
                          "(a callable (num_members, cohort_size, ctx, probe) -> indices)")
    return sel


def strategy_from_config(config: TrainConfig) -> Strategy:
    """The strategy a config describes: algorithm, weighting, processors, aggregator,
    selection.  Every plug-in is imported and constructed here, so a bad one fails
    before a run starts."""
    st = config.strategy
    algo_cfg = config.algorithm
    algorithm = make_algorithm(algo_cfg.name, algo_cfg.factory, algo_cfg.params)
    processors = tuple(make_processor(e, f"strategy.processors.{i}")
                       for i, e in enumerate(st.processors))
    aggregator: AggregatorFactory = Aggregator
    if st.aggregator is not None:
        aggregator = make_aggregator(st.aggregator, "strategy.aggregator")
    dp = [e.get("name") for e in st.processors if e.get("name") in DP_PROCESSORS]
    if dp and aggregator is not Aggregator:
        raise ConfigError(
            f"strategy.aggregator {st.aggregator.get('name') or st.aggregator.get('factory')!r}"
            f" with strategy processor {dp[0]!r}: the DP guarantee assumes the noised "
            "aggregate is the plain sum of clipped updates; use the default aggregator with DP")
    if algorithm.server_optimizer is not None and config.server.optimizer not in (
            "sgd", algorithm.server_optimizer):
        raise ConfigError(
            f"algorithm {algorithm.name!r} sets the server optimizer "
            f"({algorithm.server_optimizer}); server.optimizer {config.server.optimizer!r} "
            "contradicts it: leave server.optimizer unset, or use algorithm fedavg with "
            f"server.optimizer: {config.server.optimizer}")
    selection = (make_selection(st.selection, "strategy.selection")
                 if st.selection is not None else uniform_selection)
    return Strategy(
        algorithm=algorithm,
        weighting=algo_cfg.weighting,
        processors=processors,
        aggregator=aggregator,
        selection=selection,
    )
