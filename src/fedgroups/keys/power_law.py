"""``power-law:N:EXPONENT[:SEED]`` — group sizes following a power law (size skew)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from fedgroups.arrays import from_numpy
from fedgroups.errors import SettingError
from fedgroups.keys.base import KeyFunction, spec_fields, spec_float, spec_int, spec_seed
from fedgroups.keys.partition_common import check_positive, inverse_cdf, ordinal_uniforms


@dataclass(frozen=True, kw_only=True)
class PowerLawKey(KeyFunction):
    """Size skew: group j (0-based) receives a share ``(j+1)^-exponent / H`` of the examples.

    Group 0 is the largest; exponent 0 is IID, 1 is Zipf's law, larger is more skewed.
    Which group an example joins depends only on (seed, ordinal), never on its content.

    Examples
    --------
    >>> key = PowerLawKey.from_spec("power-law:3:1", "3:1")
    >>> [round(float(s), 3) for s in key.shares()]
    [0.545, 0.273, 0.182]
    """

    usage = "power-law:N:EXPONENT[:SEED]"
    tag: ClassVar[int] = 0x9017

    num_groups: int
    exponent: float
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: str, args: str) -> PowerLawKey:
        parts = spec_fields(spec, args, cls.usage, 2, 1)
        return cls(spec=spec, num_groups=spec_int(parts[0], spec, "N"),
                   exponent=spec_float(parts[1], spec, "EXPONENT"),
                   seed=spec_seed(parts, 2, spec))

    def __post_init__(self) -> None:
        check_positive(self.num_groups, "num_groups")
        if not self.exponent >= 0:
            raise SettingError(f"exponent must be ≥ 0, got {self.exponent!r}")
        if self.columns is None:
            object.__setattr__(self, "columns", ())

    def shares(self) -> np.ndarray:
        """The promised expected fraction of examples in each group (sums to 1)."""
        w = np.arange(1, self.num_groups + 1, dtype=np.float64) ** -self.exponent
        return w / w.sum()

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        u = ordinal_uniforms(ordinals, self.seed, self.tag)
        return from_numpy(inverse_cdf(np.cumsum(self.shares()), u), pa.int64())

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "partitioner": "power-law", "num_groups": self.num_groups,
                "exponent": self.exponent, "seed": self.seed}
