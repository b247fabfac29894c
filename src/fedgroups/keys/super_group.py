"""``super:M:FIELD[:SEED]`` — groups of groups (users → organisations) for hierarchies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import from_numpy, scalar
from fedgroups.errors import KeyFunctionError, SettingError
from fedgroups.keys.base import (
    KeyFunction,
    decoded_column,
    normalise_key_array,
    spec_fields,
    spec_int,
    spec_seed,
)
from fedgroups.keys.hashing import hash_array, splitmix64
from fedgroups.keys.partition_common import Label, check_positive, salt, seeded_rng

TAG = 0x5095  # the salt of the hash into super-groups and of super_group_mapping's shuffle


@dataclass(frozen=True, kw_only=True)
class SuperGroupKey(KeyFunction):
    """Groups of groups (users → organisations) for hierarchical federations.

    Reads a column that holds each example's group key (e.g. ``user``) and maps it to a
    super-group: through ``mapping`` when given (keys it lacks get no super-group, which
    the build's ``on_missing_key`` policy handles), else by a seeded hash into
    ``num_super_groups`` buckets. Every example of a group lands in the same super-group,
    so the super-groups nest the groups exactly.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = SuperGroupKey.from_spec("super:3:user", "3:user")
    >>> out = key.keys(pa.record_batch({"user": ["a", "b", "a"]}), np.arange(3)).to_pylist()
    >>> out[0] == out[2] and all(0 <= g < 3 for g in out)
    True
    """

    usage = "super:M:FIELD[:SEED]"
    tag: ClassVar[int] = TAG

    field_name: str
    num_super_groups: int = 0
    seed: int = 0
    mapping: Mapping[Any, Label] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_spec(cls, spec: str, args: str) -> SuperGroupKey:
        parts = spec_fields(spec, args, cls.usage, 2, 1)
        return cls(spec=spec, num_super_groups=spec_int(parts[0], spec, "M"),
                   field_name=parts[1], seed=spec_seed(parts, 2, spec))

    def __post_init__(self) -> None:
        if self.mapping is None:
            check_positive(self.num_super_groups, "num_super_groups")
        if self.columns is None:
            object.__setattr__(self, "columns", (self.field_name,))

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        col = normalise_key_array(decoded_column(batch, self.field_name), f"column {self.field_name!r}")
        if self.mapping is not None:
            encoded = pc.dictionary_encode(col)
            table = [self.mapping.get(v) for v in encoded.dictionary.to_pylist()]
            try:
                lookup = normalise_key_array(pa.array(table), "super-group mapping values")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise KeyFunctionError(f"super-group mapping values of mixed types: {e}") from e
            return lookup.take(encoded.indices)
        mixed = splitmix64(hash_array(col) ^ salt(self.seed, self.tag))
        out = from_numpy((mixed % np.uint64(self.num_super_groups)).astype(np.int64))
        if col.null_count:
            out = pc.if_else(pc.is_null(col), scalar(None, pa.int64()), out)
        return out

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"spec": self.spec, "partitioner": "super-group",
                             "field": self.field_name, "seed": self.seed}
        if self.mapping is not None:
            d["mapping_size"] = len(self.mapping)
        else:
            d["num_super_groups"] = self.num_super_groups
        return d


def super_group_mapping(keys: Sequence[Label] | Any, num_super_groups: int, *, seed: int = 0,
                        exponent: float = 0.0) -> dict[Label, int]:
    """Assign each group key to one of M super-groups (a plain dict, easy to save as JSON).

    ``keys`` is a list of group keys or a GroupedDataset (its ``keys()`` are used).
    ``exponent`` = 0 deals the groups out evenly after a seeded shuffle (super-group sizes
    in groups differ by at most one); > 0 gives super-group m a share ∝ (m+1)^-exponent of
    the groups (a few big organisations, many small ones), with every super-group non-empty
    when there are at least M groups.
    """
    check_positive(num_super_groups, "num_super_groups")
    if not exponent >= 0:
        raise SettingError(f"exponent must be ≥ 0, got {exponent!r}")
    key_list = list(keys.keys()) if hasattr(keys, "group_sizes") else list(keys)
    n = len(key_list)
    rng = seeded_rng(seed, TAG)
    order = rng.permutation(n)
    w = np.arange(1, num_super_groups + 1, dtype=np.float64) ** -exponent
    counts = np.floor(w / w.sum() * n).astype(np.int64)
    if n >= num_super_groups:
        counts = np.maximum(counts, 1)
        # Hand out (or take back) what rounding left, largest super-groups first.
        while counts.sum() > n:
            counts[int(np.argmax(counts))] -= 1
        i = 0
        while counts.sum() < n:
            counts[i % num_super_groups] += 1
            i += 1
    else:
        counts = np.zeros(num_super_groups, np.int64)
        counts[:n] = 1
    owner = np.repeat(np.arange(num_super_groups), counts)
    return {key_list[int(order[i])]: int(owner[i]) for i in range(n)}
