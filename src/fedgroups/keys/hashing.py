"""Stable hashing of keys: the same key maps to the same number on every machine and engine."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import scalar, to_numpy

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


_MEMO: dict[object, int] = {}
_MEMO_LIMIT = 1 << 18  # distinct keys remembered per process
_MEMO_KEY_CHARS = 128  # longer keys are hashed each time (keeps the memo under ~60 MB)


def _memo_hash(value: str | bytes | int) -> int:
    """stable_hash, remembered: skewed keys (a few big hosts) repeat in every batch."""
    if not isinstance(value, int) and len(value) > _MEMO_KEY_CHARS:
        return stable_hash(value)
    h = _MEMO.get(value)
    if h is None:
        h = stable_hash(value)
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[value] = h
    return h


def stable_hash(value: str | bytes | int) -> int:
    """64-bit hash of one key value, independent of process, platform and PYTHONHASHSEED."""
    if isinstance(value, str):
        data = b"s" + value.encode("utf-8")
    elif isinstance(value, bytes):
        data = b"b" + value
    else:
        data = b"i" + int(value).to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def hash_array(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """stable_hash of every element (uint64), hashing each distinct value once."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    encoded = pc.dictionary_encode(keys)
    uniques = encoded.dictionary.to_pylist()
    table = np.fromiter((_memo_hash(u) for u in uniques), dtype=np.uint64, count=len(uniques))
    # nulls hash as the first value; callers mask them
    indices = pc.fill_null(encoded.indices, scalar(0, encoded.indices.type))
    if len(table) == 0:
        return np.zeros(len(keys), np.uint64)
    return table[to_numpy(indices)]


def partition_of(keys: pa.Array | pa.ChunkedArray, num_partitions: int) -> np.ndarray:
    """Partition (0..num_partitions-1) of every key: where its group is written."""
    return (hash_array(keys) % np.uint64(num_partitions)).astype(np.int32)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash of uint64 values (vectorised, deterministic)."""
    with np.errstate(over="ignore"):
        z = (x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))
