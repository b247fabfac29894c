"""GroupedDataset and Group: the reading side of the format, by key or by position."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedgroups.errors import CorruptDatasetError
from fedgroups.format.manifest import file_sha256, read_manifest, schema_from_json
from fedgroups.format.spec import KEY_COLUMN
from fedgroups.reader.shards import ShardCache

Key = str | bytes | int


@dataclass(frozen=True)
class _Part:
    shard: int
    first_row: int
    num_rows: int


class Group:
    """One group: its key, its sizes, and lazy access to its examples."""

    def __init__(self, key: Key, parts: list[_Part], num_bytes: int, num_words: int,
                 shards: ShardCache, columns: list[str]) -> None:
        self.key = key
        self.parts = parts
        self.num_examples = sum(p.num_rows for p in parts)
        self.num_bytes = num_bytes
        self.num_words = num_words
        self._shards = shards
        self._columns = columns

    def __repr__(self) -> str:
        return f"Group(key={self.key!r}, num_examples={self.num_examples})"

    def __len__(self) -> int:
        return self.num_examples

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The group's rows as Arrow tables, one row group at a time (never the whole group)."""
        cols = list(columns) if columns is not None else self._columns
        for name in cols:
            if name not in self._columns:
                raise KeyError(f"no column {name!r}; columns are {self._columns}")
        for p in self.parts:
            yield from self._shards.get(p.shard).read_rows(p.first_row, p.num_rows, cols)

    def batches(self, batch_size: int = 1024, columns: list[str] | None = None,
                ) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_size`` rows (the last may be shorter)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        pending: list[pa.Table] = []
        held = 0
        for table in self.tables(columns):
            pending.append(table)
            held += table.num_rows
            while held >= batch_size:
                merged = pa.concat_tables(pending)
                yield from merged.slice(0, batch_size).combine_chunks().to_batches()
                rest = merged.slice(batch_size)
                pending, held = [rest], rest.num_rows
        if held:
            yield from pa.concat_tables(pending).combine_chunks().to_batches()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for table in self.tables():
            yield from table.to_pylist()

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The whole group in memory: only when the caller asks for it."""
        tables = list(self.tables(columns))
        if not tables:
            cols = columns if columns is not None else self._columns
            return pa.schema([self._shards_schema_field(c) for c in cols]).empty_table()
        return pa.concat_tables(tables)

    def _shards_schema_field(self, name: str) -> pa.Field:
        return self._shards.get(self.parts[0].shard).file.schema_arrow.field(name)


class GroupedDataset:
    """A grouped dataset on disk (or a view of some of its groups)."""

    def __init__(self, root: str, manifest: dict[str, Any], index: pa.Table,
                 group_ids: np.ndarray | None = None, shards: ShardCache | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self.index = index
        parts = np.asarray(index.column("part"))
        self._group_starts = np.flatnonzero(parts == 0).astype(np.int64)
        self._group_stops = np.append(self._group_starts[1:], len(parts)).astype(np.int64)
        self._ids = np.arange(len(self._group_starts)) if group_ids is None else group_ids
        self._shards = shards or ShardCache(root, manifest["shards"])
        self._num_rows = np.asarray(index.column("num_rows"))
        self._keys_col = index.column("key").combine_chunks()
        full = schema_from_json(manifest["schema"])
        self.schema: pa.Schema = pa.schema([f for f in full if f.name != KEY_COLUMN])
        self._columns = self.schema.names

    # ---- sizes -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def num_examples(self) -> int:
        if len(self._ids) == len(self._group_starts):
            return int(self.manifest["totals"]["examples"])
        return int(self.group_sizes().sum())

    def group_sizes(self) -> np.ndarray:
        """Examples per group, in key order (aligned with ``keys()``)."""
        csum = np.concatenate([[0], np.cumsum(self._num_rows)])
        ids = self._ids
        return csum[self._group_stops[ids]] - csum[self._group_starts[ids]]

    def keys(self) -> list[Key]:
        """Group keys in sorted order."""
        return self._keys_col.take(pa.array(self._group_starts[self._ids])).to_pylist()

    def __repr__(self) -> str:
        return (f"GroupedDataset({self.root!r}, groups={len(self)}, "
                f"examples={self.num_examples}, key={self.manifest['key'].get('spec')!r})")

    # ---- random access ---------------------------------------------------------------
    def _find(self, key: Key) -> int | None:
        """Group number of ``key`` (binary search over the sorted index), or None."""
        arr = self._keys_col
        try:
            target = pa.scalar(key, arr.type).as_py()
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            return None
        starts = self._group_starts
        lo, hi = 0, len(starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if arr[int(starts[mid])].as_py() < target:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(starts) and arr[int(starts[lo])].as_py() == target:
            return lo
        return None

    def _group_at(self, gid: int) -> Group:
        a, b = int(self._group_starts[gid]), int(self._group_stops[gid])
        rows = self.index.slice(a, b - a).to_pydict()
        parts = [_Part(s, f, n) for s, f, n in
                 zip(rows["shard"], rows["first_row"], rows["num_rows"])]
        return Group(rows["key"][0], parts, sum(rows["num_bytes"]), sum(rows["num_words"]),
                     self._shards, self._columns)

    def group(self, key: Key) -> Group:
        """The group with this key; KeyError (with close matches) if there is none."""
        gid = self._find(key)
        if gid is not None and len(self._ids) != len(self._group_starts):
            pos = int(np.searchsorted(self._ids, gid))
            if pos >= len(self._ids) or self._ids[pos] != gid:
                gid = None
        if gid is None:
            hint = ""
            if isinstance(key, str) and len(self) <= 2_000_000:
                close = difflib.get_close_matches(key, [k for k in self._nearby(key)
                                                        if isinstance(k, str)], n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"no group {key!r} in {self.root}{hint}")
        return self._group_at(gid)

    def _nearby(self, key: str) -> list[Key]:
        """Keys sorted near ``key`` plus keys sharing its first letters (for the hint)."""
        n = len(self._group_starts)
        keys = self._keys_col.take(pa.array(self._group_starts))
        if n <= 50_000:
            return keys.to_pylist()
        import pyarrow.compute as pc
        pos = int(pc.sum(pc.less(keys, pa.scalar(key, keys.type))).as_py() or 0)
        return keys.slice(max(0, pos - 200), 400).to_pylist()

    def __getitem__(self, key: Key) -> Group:
        return self.group(key)

    def __contains__(self, key: Key) -> bool:
        try:
            self.group(key)
        except KeyError:
            return False
        return True

    def group_at(self, position: int) -> Group:
        """The ``position``-th group in key order (of this view)."""
        if not 0 <= position < len(self._ids):
            raise IndexError(f"group position {position} out of range 0..{len(self._ids) - 1}")
        return self._group_at(int(self._ids[position]))

    def subset(self, keys: list[Key]) -> GroupedDataset:
        """A view holding only the given groups (KeyError names the first one missing)."""
        ids = []
        for k in keys:
            gid = self._find(k)
            if gid is None:
                raise KeyError(f"no group {k!r} in {self.root}")
            ids.append(gid)
        return self._view(np.unique(np.asarray(ids, dtype=np.int64)))

    def _view(self, ids: np.ndarray) -> GroupedDataset:
        return GroupedDataset(self.root, self.manifest, self.index, ids, self._shards)

    def __iter__(self) -> Iterator[Group]:
        for gid in self._ids:
            yield self._group_at(int(gid))


def _load_index(root: str, manifest: dict[str, Any]) -> pa.Table:
    info = manifest["index"]
    path = os.path.join(root, info["path"])
    if not os.path.exists(path):
        raise CorruptDatasetError(f"{path}: the group index is missing; rebuild the dataset")
    if os.path.getsize(path) != info["file_bytes"] or file_sha256(path) != info["sha256"]:
        raise CorruptDatasetError(
            f"{path}: the group index does not match its checksum in the manifest; the dataset "
            "is damaged — rebuild it")
    try:
        index = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise CorruptDatasetError(f"{path}: cannot read the group index ({e})") from e
    if index.num_rows != info["num_rows"]:
        raise CorruptDatasetError(f"{path}: {index.num_rows} rows, manifest says {info['num_rows']}")
    return index


def open(path: str | os.PathLike[str]) -> GroupedDataset:  # noqa: A001 - the public name
    """Open a grouped dataset written by ``fg.build`` (no code from the dataset is run)."""
    root = os.path.abspath(os.fspath(path))
    manifest = read_manifest(root)
    return GroupedDataset(root, manifest, _load_index(root, manifest))
