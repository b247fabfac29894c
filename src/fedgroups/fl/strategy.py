"""What happens to participants' updates in a round: weight, process, aggregate, server step.

A :class:`Strategy` is the federated algorithm as a few small pieces (after pfl-research,
where privacy and clipping are postprocessors in a chain rather than subclasses):

* ``local_update`` trains one participant from the global weights (FedAvg: local optimizer
  steps; FedSGD: one full-batch gradient) and returns a ``ClientUpdate``;
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

A :class:`RoundContext` carries the round's identity; randomness in a processor comes from
``ctx.generator(tag)``, a pure function of (seed, round, node, tag), so every rank of a
distributed run adds the same noise and a resumed run adds the noise it would have added.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch

from fedgroups.fl.algorithms import Aggregator, ClientUpdate, Params, Server, client_update
from fedgroups.fl.config import ConfigError, OptimizerConfig, TrainConfig, WeightingName
from fedgroups.fl.plugins import load_callable

LocalUpdate = Callable[..., ClientUpdate]
Weighting = WeightingName | Callable[[ClientUpdate], float]
AggregatorFactory = Callable[[Mapping[str, torch.Tensor]], Aggregator]
ServerFactory = Callable[[Mapping[str, torch.Tensor], OptimizerConfig], Server]


def _text_entropy(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@dataclass(frozen=True, kw_only=True)
class RoundContext:
    """Who is aggregating which round: ``node`` is "" in flat FL, a federation's name in a tree."""

    round: int
    seed: int
    node: str = ""
    num_participants: int = 0

    def generator(self, tag: str) -> torch.Generator:
        """A CPU generator seeded from (seed, round, node, tag); same on every rank."""
        words = [self.seed, self.round, _text_entropy(self.node), _text_entropy(tag)]
        state = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))


class UpdateProcessor(Protocol):
    def process_update(self, delta: Params, update: ClientUpdate, ctx: RoundContext) -> Params: ...

    def process_aggregate(self, total: Params, stats: Mapping[str, float],
                          ctx: RoundContext) -> Params: ...

    def metrics(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Processor:
    """No-op defaults for every :class:`UpdateProcessor` method: override the ones you need.

    ``metrics()`` is called once per round, after ``process_aggregate``: return that
    round's values (and reset per-round counters there).
    """

    def process_update(self, delta: Params, update: ClientUpdate, ctx: RoundContext) -> Params:
        return delta

    def process_aggregate(self, total: Params, stats: Mapping[str, float],
                          ctx: RoundContext) -> Params:
        return total

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def global_norm(delta: Mapping[str, torch.Tensor]) -> float:
    """L2 norm of all tensors of ``delta`` taken together (float64)."""
    sq = sum(float(torch.linalg.vector_norm(t.double()) ** 2) for t in delta.values())
    return math.sqrt(sq)


class NormClip(Processor):
    """Scale each participant's delta to L2 norm at most ``max_norm`` (all tensors together).

    >>> clip = NormClip(max_norm=1.0)
    >>> out = clip.process_update({"w": torch.tensor([3.0, 4.0])}, None, RoundContext(round=0, seed=0))
    >>> [round(v, 3) for v in out["w"].tolist()]
    [0.6, 0.8]
    """

    def __init__(self, max_norm: float) -> None:
        if not max_norm > 0:
            raise ConfigError(f"clip: max_norm must be > 0; got {max_norm}")
        self.max_norm = float(max_norm)
        self._seen = self._clipped = 0
        self._norm_sum = 0.0

    def process_update(self, delta: Params, update: ClientUpdate, ctx: RoundContext) -> Params:
        norm = global_norm(delta)
        self._seen += 1
        self._norm_sum += norm
        if norm <= self.max_norm:
            return delta
        self._clipped += 1
        scale = self.max_norm / norm
        return {n: t * scale for n, t in delta.items()}

    def metrics(self) -> dict[str, float]:
        seen = max(1, self._seen)
        out = {"clip/fraction_clipped": self._clipped / seen, "clip/mean_norm": self._norm_sum / seen}
        self._seen = self._clipped = 0
        self._norm_sum = 0.0
        return out


class GaussianDP(Processor):
    """Client-level DP: clip each delta to ``clip_norm`` C, add N(0, (σC)²) to the sum.

    The sensitivity of the sum is C only when every participant weighs 1, so this
    processor requires ``algorithm.weighting: uniform`` (checked on the aggregate).
    The privacy spent (ε) is left to an accountant over (σ, sampling rate, rounds).
    """

    def __init__(self, clip_norm: float, noise_multiplier: float) -> None:
        if not clip_norm > 0:
            raise ConfigError(f"dp: clip_norm must be > 0; got {clip_norm}")
        if not noise_multiplier >= 0:
            raise ConfigError(f"dp: noise_multiplier must be >= 0; got {noise_multiplier}")
        self.clip = NormClip(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.rounds = 0  # noisy aggregates released so far (for an accountant)

    def process_update(self, delta: Params, update: ClientUpdate, ctx: RoundContext) -> Params:
        return self.clip.process_update(delta, update, ctx)

    def process_aggregate(self, total: Params, stats: Mapping[str, float],
                          ctx: RoundContext) -> Params:
        if stats.get("weight", 0.0) != stats.get("clients", 0.0):
            raise ConfigError(
                "strategy processor 'dp' needs algorithm.weighting: uniform (each client "
                "weighs 1, so the sum's sensitivity is clip_norm)"
            )
        self.rounds += 1
        std = self.noise_multiplier * self.clip.max_norm if self.noise_multiplier else 0.0
        if std == 0:  # (sigma 0 with clip_norm inf is no noise, not nan)
            return total
        gen = ctx.generator("dp")
        return {n: t + torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t) * std
                for n, t in sorted(total.items())}

    def metrics(self) -> dict[str, float]:
        out = {k.replace("clip/", "dp/"): v for k, v in self.clip.metrics().items()}
        out["dp/noise_std"] = (self.noise_multiplier * self.clip.max_norm
                               if self.noise_multiplier else 0.0)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rounds = int(state["rounds"])


# Built-in processors by the ``name`` a config entry gives; values take the entry's kwargs.
PROCESSORS: dict[str, Callable[..., UpdateProcessor]] = {
    "clip": NormClip,
    "dp": GaussianDP,
}


def fedavg_update(model: torch.nn.Module, data: Any, config: Any, **kw: Any) -> ClientUpdate:
    """FedAvg's local update: client optimizer steps from the global weights."""
    return client_update(model, data, config, "fedavg", **kw)


def fedsgd_update(model: torch.nn.Module, data: Any, config: Any, **kw: Any) -> ClientUpdate:
    """FedSGD's local update: one full-batch gradient (``delta = -gradient``)."""
    return client_update(model, data, config, "fedsgd", **kw)


LOCAL_UPDATES: dict[str, LocalUpdate] = {"fedavg": fedavg_update, "fedsgd": fedsgd_update}


@dataclass(frozen=True, kw_only=True)
class Strategy:
    local_update: LocalUpdate = fedavg_update
    weighting: Weighting = "tokens"
    processors: tuple[UpdateProcessor, ...] = ()
    aggregator: AggregatorFactory = Aggregator
    server: ServerFactory = Server

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


def make_processor(entry: Mapping[str, Any], where: str) -> UpdateProcessor:
    """A processor from a config entry: ``{name: clip, ...}`` or ``{factory: "m:f", ...}``."""
    entry = dict(entry)
    name, factory = entry.pop("name", None), entry.pop("factory", None)
    if (name is None) == (factory is None):
        raise ConfigError(f"{where}: give exactly one of 'name' (one of {sorted(PROCESSORS)}) "
                          "or 'factory' ('package.module:function')")
    if name is not None:
        if name not in PROCESSORS:
            raise ConfigError(f"{where}: unknown processor {name!r}; built-ins: "
                              f"{', '.join(sorted(PROCESSORS))} (or use factory: 'pkg.mod:fn')")
        fn: Callable[..., Any] = PROCESSORS[name]
    else:
        fn = load_callable(factory, f"{where}.factory")
    try:
        proc = fn(**entry)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    if not all(callable(getattr(proc, m, None)) for m in ("process_update", "process_aggregate")):
        raise ConfigError(f"{where}: {name or factory} returned {type(proc).__name__}, not an "
                          "update processor (subclass fedgroups.fl.strategy.Processor)")
    return proc


def strategy_from_config(config: TrainConfig) -> Strategy:
    """The strategy a config describes: algorithm, weighting, processors, aggregator."""
    processors = tuple(make_processor(e, f"strategy.processors.{i}")
                       for i, e in enumerate(config.strategy.processors))
    aggregator: AggregatorFactory = Aggregator
    if config.strategy.aggregator is not None:
        kwargs = dict(config.strategy.aggregator)
        spec = kwargs.pop("factory", None)
        if spec is None:
            raise ConfigError("strategy.aggregator: needs factory: 'package.module:function'")
        fn = load_callable(spec, "strategy.aggregator.factory")
        aggregator = partial(fn, **kwargs) if kwargs else fn
    return Strategy(
        local_update=LOCAL_UPDATES[config.algorithm.name],
        weighting=config.algorithm.weighting,
        processors=processors,
        aggregator=aggregator,
    )
