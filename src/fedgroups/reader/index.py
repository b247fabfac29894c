"""The group index in memory: loaded once (the only O(groups) work), checked, searchable.

Loading checks the index file against the manifest (size, sha256, row count) and its
contents against themselves and the manifest (shard numbers and row ranges in bounds, keys
strictly sorted, totals agreeing), so a bad index fails at open, naming the file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedgroups.arrays import from_numpy, to_numpy
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.checks import index_problems
from fedgroups.format.spec import build_id_of
from fedgroups.reader.tiling import PhysicalIndex

_NEAR = 200  # keys each side of a missing key searched for "did you mean"


def load_index(root: str, manifest: dict[str, Any]) -> pa.Table:
    info = manifest["index"]
    path = os.path.join(root, info["path"])
    try:  # read once: the bytes checked are the bytes parsed, even if the file is swapped
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CorruptDatasetError(f"{path}: the group index is missing or unreadable "
                                  f"({e.strerror or e}); rebuild the dataset") from e
    if len(data) != info["file_bytes"] or hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise CorruptDatasetError(
            f"{path}: the group index does not match its checksum in the manifest; the dataset "
            "is damaged (or was replaced while being opened) — open it again, or rebuild it")
    try:
        # ParquetFile, not pq.read_table: read_table imports pyarrow.dataset (and with it
        # pandas, ~0.3 s), which opening a dataset does not need
        index = pq.ParquetFile(pa.BufferReader(data)).read()
    except (OSError, pa.ArrowException) as e:
        raise CorruptDatasetError(f"{path}: cannot read the group index ({e})") from e
    want, found = manifest.get("build_id"), build_id_of(index.schema.metadata)
    if want is not None and found != want:
        raise CorruptDatasetError(f"{path}: belongs to another build ({found or 'none'}) than "
                                  f"the manifest ({want}); rebuild the dataset")
    if index.num_rows != info["num_rows"]:
        raise CorruptDatasetError(f"{path}: {index.num_rows} rows, manifest says {info['num_rows']}")
    return index


@dataclass(frozen=True)
class IndexArrays:
    """Per-group arrays derived from the index, shared by all views of a dataset."""

    starts: np.ndarray  # first index row (part 0) of each group
    stops: np.ndarray
    sizes: np.ndarray  # examples per group
    bytes: np.ndarray  # uncompressed bytes per group
    location: np.ndarray  # (shard << 40) + first row of part 0: physical order
    words: np.ndarray  # whitespace words per group
    keys: pa.Array  # key of each group, sorted
    int_keys: np.ndarray | None  # the same as numpy, for int64 keys
    part_shard: np.ndarray  # per index row (part): shard, first row, rows
    part_first: np.ndarray
    part_rows: np.ndarray

    @classmethod
    def from_index(cls, index: pa.Table, *, manifest: dict[str, Any] | None = None,
                   root: str = "") -> IndexArrays:
        def column(name: str) -> np.ndarray:  # through fedgroups.arrays: no pandas import
            return to_numpy(index.column(name)).astype(np.int64, copy=False)

        part = column("part")
        starts = np.flatnonzero(part == 0).astype(np.int64)
        stops = np.append(starts[1:], len(part)).astype(np.int64)
        rows = column("num_rows")
        nbytes = column("num_bytes")
        nwords = column("num_words")
        shard = column("shard")
        first = column("first_row")
        keys = index.column("key").combine_chunks().take(from_numpy(starts))
        if manifest is not None:
            _check(root, manifest, index, part, starts, rows, shard, first, keys)
        csum = np.concatenate([[0], np.cumsum(rows)])
        bsum = np.concatenate([[0], np.cumsum(nbytes)])
        wsum = np.concatenate([[0], np.cumsum(nwords)])
        loc = (shard[starts] << 40) + first[starts] if len(starts) else np.zeros(0, np.int64)
        int_keys = to_numpy(keys) if pa.types.is_integer(keys.type) else None
        return cls(starts, stops, csum[stops] - csum[starts], bsum[stops] - bsum[starts], loc,
                   wsum[stops] - wsum[starts], keys, int_keys, shard, first, rows)

    @cached_property
    def physical(self) -> PhysicalIndex:
        """The parts in on-disk order (made on first use: streams check row groups with it)."""
        shards = int(self.part_shard.max()) + 1 if len(self.part_shard) else 0
        return PhysicalIndex.from_parts(self.starts, self.stops, self.part_shard,
                                        self.part_first, self.part_rows, shards)

    def lower_bound(self, key: Any) -> int:
        """First group number whose key is >= ``key`` (keys are sorted)."""
        if self.int_keys is not None:
            return int(np.searchsorted(self.int_keys, key, side="left"))
        lo, hi = 0, len(self.keys)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.keys[mid].as_py() < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def find(self, key: Any) -> int | None:
        """Group number of ``key``, or None (also for a key of the wrong type)."""
        if isinstance(key, bool):
            return None
        t = self.keys.type
        if isinstance(key, str) and (pa.types.is_string(t) or pa.types.is_large_string(t)) or \
                isinstance(key, bytes) and (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            target = key  # as pa.scalar would give it back, without its pandas import
        else:
            try:
                target = pa.scalar(key, t).as_py()
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                return None
        pos = self.lower_bound(target)
        if pos < len(self.keys) and self.keys[pos].as_py() == target:
            return pos
        return None

    def near(self, key: Any, ids: np.ndarray) -> np.ndarray:
        """Positions in ``ids`` (sorted group numbers) of groups sorted near ``key``."""
        if len(ids) <= 2 * _NEAR:
            return np.arange(len(ids))
        try:
            gid = self.lower_bound(key)
        except TypeError:
            return np.zeros(0, np.int64)
        pos = int(np.searchsorted(ids, gid))
        return np.arange(max(0, pos - _NEAR), min(len(ids), pos + _NEAR))


def _check(root: str, manifest: dict[str, Any], index: pa.Table, part: np.ndarray,
           starts: np.ndarray, rows: np.ndarray, shard: np.ndarray, first: np.ndarray,
           keys: pa.Array) -> None:
    """Vectorised consistency checks of the index against itself and the manifest (the
    same ones every build runs before it publishes: format/checks.py)."""
    problems = index_problems(part=part, rows=rows, shard=shard, first=first, group_keys=keys,
                              shard_rows=[s["num_rows"] for s in manifest["shards"]],
                              totals=manifest["totals"])
    if problems:
        path = os.path.join(root, manifest["index"]["path"])
        raise CorruptDatasetError(f"{path}: the group index is inconsistent: "
                                  f"{'; '.join(problems)} — rebuild the dataset")
