"""``dirichlet:N:ALPHA:LABEL[:SEED]`` — label skew with Dirichlet proportions (Hsu et al., 2019)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from fedgroups.keys.base import KeyFunction, spec_fields, spec_float, spec_int, spec_seed
from fedgroups.keys.partition_common import (
    Label,
    check_positive,
    groups_by_label,
    inverse_cdf,
    ordinal_uniforms,
    seeded_rng,
)


@dataclass(frozen=True, kw_only=True)
class DirichletLabelKey(KeyFunction):
    """Label skew: label l's examples go to group j with probability ``proportions(l)[j]``.

    ``proportions(l)`` ~ Dirichlet(alpha · 1_N), drawn from a generator seeded by
    (seed, l), so no worker needs to see the other labels. Small alpha (0.1) gives each
    label to a few groups; large alpha (100) is close to IID. Group sizes vary too, as in
    the usual recipe (Hsu et al., 2019).

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = DirichletLabelKey.from_spec("dirichlet:4:0.5:y", "4:0.5:y")
    >>> key.keys(pa.record_batch({"y": [0, 1, 0]}), np.arange(3, dtype=np.uint64)).type
    DataType(int64)
    >>> round(float(key.proportions(0).sum()), 6)
    1.0
    """

    usage = "dirichlet:N:ALPHA:LABEL[:SEED]"
    tag: ClassVar[int] = 0xD1C1

    num_groups: int
    alpha: float
    label_column: str
    seed: int = 0
    _cache: dict[Hashable, np.ndarray] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_spec(cls, spec: str, args: str) -> DirichletLabelKey:
        parts = spec_fields(spec, args, cls.usage, 3, 1)
        return cls(spec=spec, num_groups=spec_int(parts[0], spec, "N"),
                   alpha=spec_float(parts[1], spec, "ALPHA"), label_column=parts[2],
                   seed=spec_seed(parts, 3, spec))

    def __post_init__(self) -> None:
        check_positive(self.num_groups, "num_groups")
        check_positive(self.alpha, "alpha")
        if self.columns is None:
            object.__setattr__(self, "columns", (self.label_column,))

    def proportions(self, label: Label) -> np.ndarray:
        """The promised distribution of ``label``'s examples over the N groups."""
        cached = self._cache.get(label)
        if cached is not None:
            return cached
        rng = seeded_rng(self.seed, self.tag, label)
        p = rng.dirichlet(np.full(self.num_groups, self.alpha))
        if not np.all(np.isfinite(p)) or p.sum() <= 0:
            # alpha so small that every gamma draw underflowed: the alpha → 0 limit, one group.
            p = np.zeros(self.num_groups)
            p[rng.integers(self.num_groups)] = 1.0
        self._cache[label] = p
        return p

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        return groups_by_label(
            batch, self.label_column, ordinal_uniforms(ordinals, self.seed, self.tag),
            lambda label, u, rows: inverse_cdf(np.cumsum(self.proportions(label)), u))

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "partitioner": "dirichlet-label", "num_groups": self.num_groups,
                "alpha": self.alpha, "label_column": self.label_column, "seed": self.seed}
