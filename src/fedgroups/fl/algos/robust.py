"""Byzantine-robust aggregators: coordinate-wise median, trimmed mean, (multi-)Krum.

Each replaces the running weighted sum of ``fl/algorithms.py`` by an estimate computed from
every participant's (processed) delta, so it **keeps all of a round's deltas: memory is
cohort size x model size** (the default aggregator keeps one model whatever the cohort).
The estimates are unweighted, as in the papers: ``algorithm.weighting`` still fills the
round's counters, and :meth:`total` returns ``estimate * total weight`` because the engine
divides the total by the weight.

Config::

    strategy:
      aggregator: {name: median}                       # Yin et al., 2018
      aggregator: {name: trimmed_mean, beta: 0.1}      # Yin et al., 2018
      aggregator: {name: krum, byzantine: 1, m: 1}     # Blanchard et al., 2017

>>> import torch
>>> from fedgroups.fl.algorithms import ClientUpdate
>>> agg = Median({"w": torch.zeros(2)})
>>> for i, d in enumerate([[1.0, 5.0], [2.0, -1.0], [100.0, 3.0]]):
...     u = ClientUpdate(key=i, num_examples=1, num_tokens=1, loss_sum=0.0, loss_tokens=1,
...                      steps=1, finite=True, delta=[("w", torch.tensor(d))])
...     agg.add(u, 1.0)
>>> (agg.total()["w"] / agg.stat("weight")).tolist()
[2.0, 3.0]

They run with backend ``sequential`` only (the engine refuses ``distributed``: ranks would
need to exchange every delta), and not with a DP processor (whose guarantee assumes the
plain sum; ``strategy_from_config`` refuses the pair).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from fedgroups.fl.algorithms import Aggregator, ClientUpdate, Params
from fedgroups.fl.config import ConfigError


class KeepAll(Aggregator):
    """Base of the robust aggregators: keeps each finite participant's delta (float32).

    Counters and extras are the base class's (``super().add`` with no delta, so the
    running sums stay unused); subclasses implement :meth:`estimate`.
    """

    def __init__(self, template: Mapping[str, torch.Tensor]) -> None:
        super().__init__(template)
        self.kept: list[Params] = []

    def add(self, update: ClientUpdate, weight: float,
            delta: Iterable[tuple[str, torch.Tensor]] | None = None) -> None:
        if update.finite:
            pairs = update.delta if delta is None else delta
            self.kept.append({n: d.detach().to(torch.float32, copy=True) for n, d in pairs})
        super().add(update, weight, ())

    def merge(self, other: Aggregator) -> None:
        super().merge(other)
        self.kept.extend(getattr(other, "kept", []))

    def all_reduce(self) -> None:
        raise ConfigError(f"strategy.aggregator {type(self).__name__} keeps every delta: it "
                          "runs with backend 'sequential' only")

    def check(self, *, cohort_size: int, backend_world_size: int = 1) -> None:
        """Refuse, before a run starts, what would fail in its first round."""
        if backend_world_size > 1:
            self.all_reduce()

    def stacked(self, name: str) -> torch.Tensor:
        """The kept deltas of parameter ``name``, stacked: (n, *shape)."""
        return torch.stack([d[name] for d in self.kept])

    def estimate(self) -> Params:
        raise NotImplementedError

    def total(self) -> Params:
        if not self.kept:
            return self.sums  # nobody contributed (weight 0): the engine takes no step
        w = self.stat("weight")
        return {n: t * w for n, t in self.estimate().items()}


class Median(KeepAll):
    """Coordinate-wise median of the deltas (FedMedian; Yin et al., 2018).

    With an even number of deltas, the mean of the two middle values.
    """

    def estimate(self) -> Params:
        n = len(self.kept)
        out: Params = {}
        for name in self.sums:
            s = self.stacked(name).sort(dim=0).values
            out[name] = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
        return out


class TrimmedMean(KeepAll):
    """Coordinate-wise ``beta``-trimmed mean (Yin et al., 2018).

    Per coordinate, the ``floor(beta * n)`` largest and smallest values are dropped and the
    rest averaged; ``0 <= beta < 0.5`` (``beta: 0`` is the plain unweighted mean).
    """

    def __init__(self, template: Mapping[str, torch.Tensor], beta: float = 0.1) -> None:
        if not (isinstance(beta, int | float) and 0 <= beta < 0.5):
            raise ConfigError(f"trimmed_mean: beta (the fraction trimmed from each end) must "
                              f"be in [0, 0.5); got {beta!r}")
        super().__init__(template)
        self.beta = float(beta)

    def estimate(self) -> Params:
        n = len(self.kept)
        k = math.floor(self.beta * n)
        return {name: self.stacked(name).sort(dim=0).values[k:n - k].mean(dim=0)
                for name in self.sums}


class Krum(KeepAll):
    """(Multi-)Krum (Blanchard et al., 2017): the delta(s) closest to their neighbours.

    score(i) = sum of squared L2 distances (all parameters together) from delta i to its
    ``n - f - 2`` nearest other deltas, f = ``byzantine``.  Krum returns the delta with the
    lowest score; multi-Krum (``m`` > 1) the mean of the ``m`` lowest-scoring ones (ties go
    to the earlier cohort position).  Needs ``n >= 2f + 3`` participants in every round and
    ``m <= n - f``.
    """

    def __init__(self, template: Mapping[str, torch.Tensor], byzantine: int = 1,
                 m: int = 1) -> None:
        for setting, value, low in (("byzantine", byzantine, 0), ("m", m, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"krum: {setting} must be an integer >= {low}; got {value!r}")
        super().__init__(template)
        self.byzantine, self.m = byzantine, m

    def check(self, *, cohort_size: int, backend_world_size: int = 1) -> None:
        super().check(cohort_size=cohort_size, backend_world_size=backend_world_size)
        self._check_count(cohort_size, f"cohort_size is {cohort_size}")
        self._check_m(cohort_size)

    def _check_count(self, n: int, had: str) -> None:
        f = self.byzantine
        if n < 2 * f + 3:
            raise ConfigError(
                f"strategy.aggregator krum with byzantine: {f} needs at least 2f + 3 = "
                f"{2 * f + 3} participants per round; {had} (cohort_size too small, or "
                "clients skipped): raise cohort_size or lower byzantine")

    def _check_m(self, n: int) -> None:
        if self.m > n - self.byzantine:
            raise ConfigError(f"strategy.aggregator krum: m = {self.m} is more than n - f = "
                              f"{n - self.byzantine} for {n} participants; lower m")

    def scores(self) -> list[float]:
        """Krum's score of each kept delta (float64)."""
        n, f = len(self.kept), self.byzantine
        self._check_count(n, f"this round had {n}")
        dist = torch.zeros(n, n, dtype=torch.float64)
        for name in self.sums:
            x = self.stacked(name).reshape(n, -1).double()  # (n, numel)
            dist += torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        dist.fill_diagonal_(math.inf)  # a delta is not its own neighbour
        nearest = dist.sort(dim=1).values[:, : n - f - 2]
        return nearest.sum(dim=1).tolist()

    def chosen(self) -> list[int]:
        """Cohort positions (in order of kept deltas) that multi-Krum averages."""
        scores = self.scores()
        n = len(self.kept)
        self._check_m(n)
        return sorted(range(n), key=lambda i: (scores[i], i))[: self.m]

    def estimate(self) -> Params:
        best = self.chosen()
        return {name: torch.stack([self.kept[i][name] for i in best]).mean(dim=0)
                for name in self.sums}
