"""``hash:N:FIELD`` — a column's values hashed into N buckets (many ids → N groups)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import from_numpy, scalar
from fedgroups.errors import SettingError
from fedgroups.keys.base import KeyFunction, decoded_column, normalise_key_array, spec_int
from fedgroups.keys.hashing import hash_array


@dataclass(frozen=True, kw_only=True)
class HashKey(KeyFunction):
    """Each example's group is a stable hash of its ``field_name`` value modulo ``num_groups``.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = HashKey.from_spec("hash:4:user", "4:user")
    >>> out = key.keys(pa.record_batch({"user": ["a", "b", "a"]}), np.arange(3)).to_pylist()
    >>> out[0] == out[2] and all(0 <= g < 4 for g in out)
    True
    """

    usage = "hash:N:FIELD"

    field_name: str
    num_groups: int

    @classmethod
    def from_spec(cls, spec: str, args: str) -> HashKey:
        n, _, name = args.partition(":")  # the field name may itself hold ':'
        if not name:
            raise SettingError(f"key {spec!r}: use {cls.usage}")
        return cls(spec=spec, field_name=name, columns=(name,),
                   num_groups=spec_int(n, spec, "N"))

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        col = normalise_key_array(decoded_column(batch, self.field_name), f"column {self.field_name!r}")
        buckets = from_numpy((hash_array(col) % np.uint64(self.num_groups)).astype(np.int64))
        if col.null_count:  # a missing value has no group; keep it null
            buckets = pc.if_else(pc.is_null(col), scalar(None, pa.int64()), buckets)
        return buckets
