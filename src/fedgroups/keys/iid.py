"""``iid:N[:SEED]`` — each example to one of N groups uniformly at random (seeded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.arrays import from_numpy
from fedgroups.keys.base import KeyFunction, spec_fields, spec_int, spec_seed
from fedgroups.keys.hashing import splitmix64


@dataclass(frozen=True, kw_only=True)
class IidKey(KeyFunction):
    """Each example's group is uniform over ``num_groups``: a hash of (seed, ordinal).

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = IidKey.from_spec("iid:3:7", "3:7")
    >>> out = key.keys(pa.record_batch({"x": [0] * 5}), np.arange(5, dtype=np.uint64))
    >>> sorted(set(out.to_pylist())) <= [0, 1, 2], key.seed
    (True, 7)
    """

    usage = "iid:N[:SEED]"

    num_groups: int
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: str, args: str) -> IidKey:
        parts = spec_fields(spec, args, cls.usage, 1, 1)
        return cls(spec=spec, columns=(), num_groups=spec_int(parts[0], spec, "N"),
                   seed=spec_seed(parts, 1, spec))

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        salt = splitmix64(np.array([self.seed], dtype=np.uint64))[0]
        mixed = splitmix64(ordinals.astype(np.uint64) ^ salt)
        return from_numpy((mixed % np.uint64(self.num_groups)).astype(np.int64))

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed": self.seed}
