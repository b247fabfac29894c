"""What the synthetic partitioners share: seeded per-example randomness and label columns.

The one source of per-example randomness is :func:`ordinal_uniforms`: ``splitmix64`` of the
ordinal xor a salt derived from (seed, the partitioner's tag), mapped to [0, 1). Each
partitioner inverts a CDF at that uniform, so its groups are a pure function of (seed,
ordinal[, label]): the same on every machine, with any number of workers. Each partitioner
has its own ``tag`` (distinct, so partitioners with one seed are independent).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import from_numpy, scalar, to_numpy
from fedgroups.errors import SettingError
from fedgroups.keys.base import decoded_column, normalise_key_array
from fedgroups.keys.hashing import splitmix64, stable_hash

Label = str | bytes | int


def salt(seed: int, tag: int) -> np.uint64:
    mixed = splitmix64(np.array([(seed * 0x10001 + tag) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    return mixed[0]


def ordinal_uniforms(ordinals: np.ndarray, seed: int, tag: int) -> np.ndarray:
    """One uniform in [0, 1) per ordinal: a pure function of (ordinal, seed, tag)."""
    bits = splitmix64(ordinals.astype(np.uint64) ^ salt(seed, tag))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def seeded_rng(seed: int, tag: int, label: Label | None = None) -> np.random.Generator:
    """A generator seeded by (seed, tag[, label]) — the same on every worker."""
    words = [seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, tag]
    if label is not None:
        h = stable_hash(label)
        words += [h & 0xFFFFFFFF, h >> 32]
    return np.random.default_rng(np.random.SeedSequence(words))


def check_positive(value: float, what: str) -> None:
    if not value > 0:
        raise SettingError(f"{what} must be positive, got {value!r}")


def groups_by_label(
    batch: pa.RecordBatch, label_column: str, uniforms: np.ndarray,
    choose: Callable[[Label, np.ndarray, np.ndarray], np.ndarray],
) -> pa.Array:
    """One group per example, label by label: ``choose(label, uniforms, rows)`` gives the
    groups of that label's rows (their positions in the batch, and their uniforms). Rows
    whose label is null get no group (the engine's on_missing_key policy decides)."""
    labels = normalise_key_array(decoded_column(batch, label_column),
                                 f"label column {label_column!r}")
    encoded = pc.dictionary_encode(labels)
    codes = to_numpy(pc.fill_null(encoded.indices, scalar(-1, encoded.indices.type))
                     ).astype(np.int64)
    groups = np.zeros(len(codes), np.int64)
    for code, value in enumerate(encoded.dictionary.to_pylist()):
        rows = np.flatnonzero(codes == code)
        groups[rows] = choose(value, uniforms[rows], rows)
    out = from_numpy(groups)
    if (codes < 0).any():  # no label: no group
        out = pc.if_else(from_numpy(codes < 0), scalar(None, pa.int64()), out)
    return out


def inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Smallest j with u < cdf[j] (cdf ends at ~1; rounding can't push past the last group)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
