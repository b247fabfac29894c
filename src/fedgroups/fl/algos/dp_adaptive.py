"""DP-FedAvg with adaptive clipping (Andrew et al., 2021, "Differentially Private Learning
with Adaptive Clipping").

The clip norm C follows a quantile of the clients' update norms instead of being tuned.
Each round, with n the clients that contributed and C the current clip norm:

* each delta Δ_i is clipped to norm C, and b_i = 1[‖Δ_i‖ <= C] is counted;
* the clipped sum gets N(0, (z_Δ·C)²) noise per coordinate, z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2):
  the budget of the noise multiplier z is split between the update and the count;
* the count gets N(0, σ_b²): b̃ = (Σ b_i + noise) / n is the noisy fraction unclipped;
* C ← C·exp(−η_C·(b̃ − γ)), the geometric update towards the γ-quantile of the norms.

Config::

    algorithm: {weighting: uniform}     # the sum's sensitivity is C only if each weighs 1
    strategy:
      processors:
        - {name: dp_adaptive, noise_multiplier: 1.0, initial_clip: 0.1,
           target_quantile: 0.5, clip_lr: 0.2, clipped_count_stddev: null}

``clipped_count_stddev`` (σ_b) defaults to the paper's choice, (expected clients per
round) / 20, taken as the round's cohort size; it must exceed z/2 (else the count would
take all of the budget).  Noise comes from ``ctx.generator("dp")`` (update) and
``ctx.generator("dp_count")`` (count), so a resumed run adds the noise it would have.
The privacy spent (ε) is left to an accountant over (z, sampling rate, rounds).

>>> import torch
>>> from fedgroups.fl.processors import RoundContext
>>> dp = AdaptiveClipDP(noise_multiplier=0.0, initial_clip=1.0, clipped_count_stddev=0.0)
>>> ctx = RoundContext(round=0, seed=0, num_participants=1)
>>> _ = dp.process_update({"w": torch.tensor([0.3, 0.4])}, None, ctx)
>>> _ = dp.process_aggregate({"w": torch.tensor([0.3, 0.4])}, {"weight": 1.0, "clients": 1.0}, ctx)
>>> round(dp.clip_norm, 6) == round(math.exp(-0.2 * (1 - 0.5)), 6)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from fedgroups.fl.algorithms import ClientUpdate, Params
from fedgroups.fl.config import ConfigError
from fedgroups.fl.processors import Processor, RoundContext, global_norm

NAME = "dp_adaptive"


def update_noise_multiplier(z: float, count_stddev: float) -> float:
    """z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2): the update's share of the noise multiplier z.

    0 when z is 0 (no privacy asked); ConfigError unless 2σ_b > z.
    """
    if z == 0:
        return 0.0
    if not 2 * count_stddev > z:
        raise ConfigError(
            f"{NAME}: clipped_count_stddev ({count_stddev:g}) must be more than "
            f"noise_multiplier / 2 ({z / 2:g}): the count would use the whole noise budget; "
            "raise clipped_count_stddev (or the cohort size, when it is left at its "
            "default cohort / 20)")
    return (z ** -2 - (2 * count_stddev) ** -2) ** -0.5


def _finite(name: str, value: Any, low: float, *, strict: bool, high: float = math.inf
            ) -> float:
    """``value`` as a float in [low, high] (or (low, high] when ``strict``), else ConfigError."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf
                                                       else "")
        raise ConfigError(f"{NAME}: {name} must be a finite number {bound}; got {value!r}")
    return float(value)


class AdaptiveClipDP(Processor):
    """Clip to an adaptive norm C, noise the sum and the unclipped count (Andrew et al.)."""

    def __init__(self, noise_multiplier: float, initial_clip: float,
                 target_quantile: float = 0.5, clip_lr: float = 0.2,
                 clipped_count_stddev: float | None = None) -> None:
        self.noise_multiplier = _finite("noise_multiplier", noise_multiplier, 0, strict=False)
        self.clip_norm = _finite("initial_clip", initial_clip, 0, strict=True)
        self.target_quantile = _finite("target_quantile", target_quantile, 0, strict=False,
                                       high=1)
        self.clip_lr = _finite("clip_lr", clip_lr, 0, strict=False)
        self.count_stddev = (None if clipped_count_stddev is None else
                             _finite("clipped_count_stddev", clipped_count_stddev, 0,
                                     strict=False))
        if self.count_stddev is not None:
            update_noise_multiplier(self.noise_multiplier, self.count_stddev)  # checked now
        self.rounds = 0  # noisy aggregates released so far (for an accountant)
        self._seen = self._unclipped = 0  # this round, on this process
        self._last: dict[str, float] = {}

    def check(self, *, cohort_size: int, backend_world_size: int = 1) -> None:
        """Refuse, before a run starts, what would fail in its first round."""
        if backend_world_size > 1:
            raise ConfigError(f"strategy processor '{NAME}' counts unclipped updates in one "
                              "process: it runs with backend 'sequential' only")
        if self.count_stddev is None:
            update_noise_multiplier(self.noise_multiplier, cohort_size / 20)

    def count_stddev_for(self, ctx: RoundContext, clients: float) -> float:
        """σ_b: as set, else (expected clients per round) / 20 (the paper's default)."""
        if self.count_stddev is not None:
            return self.count_stddev
        return (ctx.num_participants or clients) / 20

    def process_update(self, delta: Params, update: ClientUpdate, ctx: RoundContext) -> Params:
        norm = global_norm(delta)
        self._seen += 1
        if norm <= self.clip_norm:
            self._unclipped += 1
            return delta
        scale = self.clip_norm / norm
        return {n: t * scale for n, t in delta.items()}

    def process_aggregate(self, total: Params, stats: Mapping[str, float],
                          ctx: RoundContext) -> Params:
        clients = stats.get("clients", 0.0)
        if stats.get("weight", 0.0) != clients:
            raise ConfigError(f"strategy processor '{NAME}' needs algorithm.weighting: uniform "
                              "(each client weighs 1, so the sum's sensitivity is the clip norm)")
        if self._seen != clients:
            # Ranks each clip their own clients; the count would need a reduction too.
            raise ConfigError(f"strategy processor '{NAME}' counted {self._seen} of the round's "
                              f"{clients:g} updates in this process: it runs with backend "
                              "'sequential' only")
        sigma_b = self.count_stddev_for(ctx, clients)
        z_delta = update_noise_multiplier(self.noise_multiplier, sigma_b)
        clip = self.clip_norm
        std = z_delta * clip
        if std > 0:
            gen = ctx.generator("dp")
            total = {n: t + torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t) * std
                     for n, t in sorted(total.items())}
        count = float(self._unclipped)
        if sigma_b > 0:
            count += sigma_b * float(torch.randn((), generator=ctx.generator("dp_count"),
                                                 dtype=torch.float64))
        fraction = count / clients
        self.clip_norm = clip * math.exp(-self.clip_lr * (fraction - self.target_quantile))
        self.rounds += 1
        self._seen = self._unclipped = 0
        self._last = {"dp/clip_norm": clip, "dp/fraction_unclipped": fraction,
                      "dp/noise_std": std, "dp/next_clip_norm": self.clip_norm}
        return total

    def metrics(self) -> dict[str, float]:
        """This round's clip norm (the one used), noisy unclipped fraction (the one released)
        and noise std on the sum; the clip norm of the next round."""
        out, self._last = self._last, {}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"clip_norm": self.clip_norm, "rounds": self.rounds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.clip_norm = float(state["clip_norm"])
        self.rounds = int(state["rounds"])
