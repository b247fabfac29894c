"""Update processors and the round's identity they see.

A processor transforms each participant's delta (``process_update``: clip, compress) and
then the weighted **sum** of deltas before it is divided by the total weight
(``process_aggregate``: add noise); see ``fl/strategy.py`` for where they sit in a round.
Built-ins: :class:`NormClip` (``clip``), :class:`GaussianDP` (``dp``), and
``fl/algos/dp_adaptive.py`` (``dp_adaptive``).

A :class:`RoundContext` carries the round's identity; randomness in a processor comes from
``ctx.generator(tag)``, a pure function of (seed, round, node, tag), so every rank of a
distributed run adds the same noise and a resumed run adds the noise it would have added.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from fedgroups.fl.algorithms import ClientUpdate, Params
from fedgroups.fl.config import ConfigError


def _text_entropy(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@dataclass(frozen=True, kw_only=True)
class RoundContext:
    """Who is aggregating which round: ``node`` is "" in flat FL, a federation's name in a tree."""

    round: int
    seed: int
    node: str = ""
    num_participants: int = 0  # the cohort's size
    num_members: int = 0  # clients (or sub-federations) the cohort is drawn from

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
        if not 0 <= noise_multiplier < math.inf:
            raise ConfigError(f"dp: noise_multiplier must be finite and >= 0; got "
                              f"{noise_multiplier}")
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
