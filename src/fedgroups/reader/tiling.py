"""Checking a decoded row group against the index, all its rows at once.

The index says where every group's rows are: (shard, first row, rows) per part. Sorted by
position, a shard's parts must tile it — each row in exactly one part — so the index
predicts the key of every row. A stream checks each row group it decodes against that
prediction with one Arrow comparison, and then needs no check per group: a group's rows
are exactly one run of its key because every row around them matched too. (Random access
reads one group and checks its run instead: see shards.py.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import to_numpy
from fedgroups.errors import CorruptDatasetError


@dataclass(frozen=True)
class PhysicalIndex:
    """The index's parts in on-disk order: by shard, then first row."""

    first: np.ndarray  # first row of each part, in order
    stop: np.ndarray  # first row after it
    group: np.ndarray  # group number of each part
    shard_lo: np.ndarray  # parts of shard s are [shard_lo[s], shard_lo[s + 1])

    @classmethod
    def from_parts(cls, starts: np.ndarray, stops: np.ndarray, part_shard: np.ndarray,
                   part_first: np.ndarray, part_rows: np.ndarray, num_shards: int,
                   ) -> PhysicalIndex:
        """From the index's parts in key order (group g is parts starts[g]:stops[g]), as
        :class:`~fedgroups.reader.index.IndexArrays` holds them."""
        order = np.lexsort((part_first, part_shard))
        group = np.repeat(np.arange(len(starts), dtype=np.int64), stops - starts)
        shard = part_shard[order]
        lo = np.searchsorted(shard, np.arange(num_shards + 1), side="left")
        first = part_first[order]
        return cls(first, first + part_rows[order], group[order], lo)


def check_row_group(phys: PhysicalIndex, index_keys: pa.Array, path: str, shard: int,
                    start: int, stop: int, keys: pa.Array) -> None:
    """Raise CorruptDatasetError unless ``keys`` (the key column of rows start:stop of the
    shard) is what the index says those rows hold."""
    lo, hi = phys.shard_lo[shard], phys.shard_lo[shard + 1]
    first, end = phys.first[lo:hi], phys.stop[lo:hi]
    i = int(np.searchsorted(first, start, side="right")) - 1  # the part holding row start
    j = int(np.searchsorted(first, stop, side="left"))  # parts i..j-1 meet the rows
    tiled = (i >= 0 and j > i and first[i] <= start and end[j - 1] >= stop
             and bool(np.all(first[i + 1:j] == end[i:j - 1])))
    detail = "the index's parts do not cover them exactly once"
    if tiled:
        lengths = np.minimum(end[i:j], stop) - np.maximum(first[i:j], start)
        if pa.types.is_dictionary(keys.type):
            if _runs_match(index_keys, phys.group[lo + i:lo + j], lengths, keys):
                return
            keys = keys.dictionary_decode()  # find the first wrong row, as below
        groups = np.repeat(phys.group[lo + i:lo + j], lengths)
        expected = index_keys.take(groups).cast(keys.type)
        if len(expected) == len(keys):
            if expected.equals(keys):
                return
            row = int(np.argmax(~np.asarray(pc.equal(expected, keys).fill_null(False))))
            detail = f"row {start + row} should hold group {expected[row].as_py()!r}"
    raise CorruptDatasetError(
        f"{path}: rows {start}..{stop} should hold exactly the groups the index places there "
        f"({detail}); the index and shard disagree — rebuild the dataset")


def _runs_match(index_keys: pa.Array, groups: np.ndarray, lengths: np.ndarray,
                keys: pa.DictionaryArray) -> bool:
    """Do ``keys`` (read dictionary-encoded) hold ``lengths[p]`` rows of group
    ``groups[p]``'s key for each part ``p`` in turn? Every row's dictionary index equals its
    part's first row's, and those first rows' values are the parts' keys: a comparison of
    one string per part instead of per row. False also where it cannot tell (nulls, or a
    dictionary holding one value twice): the caller then compares every row."""
    if keys.null_count or len(keys) != int(lengths.sum()):
        return False
    codes = to_numpy(keys.indices)
    heads = codes[np.cumsum(lengths) - lengths]
    if not np.array_equal(np.repeat(heads, lengths), codes):
        return False
    expected = index_keys.take(groups).cast(keys.type.value_type)
    return bool(keys.dictionary.take(heads).equals(expected))
