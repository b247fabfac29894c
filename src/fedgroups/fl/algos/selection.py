"""Power-of-choice client selection (Cho, Wang and Joshi, "Towards Understanding Biased
Client Selection in Federated Learning", AISTATS 2022; arXiv 2020).

Each round: draw ``d`` candidate clients without replacement, evaluate the current global
model's loss on each (``probe``: one forward pass over the client's training sequences),
and take the ``cohort_size`` candidates with the highest loss.  Biasing the cohort toward
clients the model fits worst speeds up convergence at some cost in the error floor.

Candidates are drawn **uniformly** (the paper draws them in proportion to data size; the
selection hook sees member indices only), from ``ctx.generator("selection")``, so the
candidates are a pure function of (seed, round, federation).  Ties in loss go to the lower
member index; a candidate whose loss is nan (no data) ranks last.

``d`` defaults to twice the cohort size (capped at the number of members); it must be at
least the cohort size (``d`` equal to the cohort size is uniform selection).  Probing costs
``d`` forward passes over each candidate's data per round.

Config::

    strategy: {selection: {name: power_of_choice, d: 20}}

>>> from fedgroups.fl.processors import RoundContext
>>> pick = PowerOfChoice(d=4)
>>> pick(10, 2, RoundContext(round=0, seed=0), probe=lambda i: float(i))  # loss = index
[5, 4]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from fedgroups.fl.config import ConfigError

Probe = Callable[[int], float]


class PowerOfChoice:
    """``(num_members, cohort_size, ctx, probe) -> indices``: the highest-loss of ``d``
    uniformly drawn candidates (module docstring)."""

    def __init__(self, d: int | None = None) -> None:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ConfigError(f"strategy.selection power_of_choice: d must be an integer >= 1 "
                              f"(candidates per round); got {d!r}")
        self.d = d

    def __repr__(self) -> str:
        return f"power_of_choice(d={self.d})"

    def candidates(self, num_members: int, cohort_size: int, ctx: Any) -> list[int]:
        """The round's ``d`` candidates (uniform, without replacement), in draw order."""
        m = min(cohort_size, num_members)
        d = 2 * m if self.d is None else self.d
        if d < m:
            raise ConfigError(f"strategy.selection power_of_choice: d ({d}) must be >= the "
                              f"cohort size ({m}); raise d or lower cohort_size")
        order = torch.randperm(num_members, generator=ctx.generator("selection"))
        return order[: min(d, num_members)].tolist()

    def __call__(self, num_members: int, cohort_size: int, ctx: Any,
                 probe: Probe | None) -> list[int]:
        if probe is None:
            raise ConfigError("strategy.selection power_of_choice needs clients; in a tree it "
                              "applies to leaf federations")
        chosen = self.candidates(num_members, cohort_size, ctx)
        losses = {i: float(probe(i)) for i in chosen}
        rank = lambda i: (-losses[i] if not math.isnan(losses[i]) else math.inf, i)  # noqa: E731
        return sorted(chosen, key=rank)[: min(cohort_size, num_members)]
