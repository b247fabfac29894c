"""Opening shard files: checked against the manifest, row groups located by row number.

Every read of a group's rows also reads the key column and checks that the first and last
row of each slice carry the group's key (rows of one part are contiguous), so a damaged or
mismatched index raises instead of returning another group's data.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedgroups.arrays import from_numpy, to_numpy
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.rows import column_values
from fedgroups.format.spec import KEY_COLUMN
from fedgroups.reader.shard_open import OpenShard, open_checked

# Row groups read only in part (many small groups share one) are kept this long, so a
# shuffled stream that visits a row group's groups in turn decodes it about once.
DEFAULT_CACHE_BYTES = 128 << 20
ROW_BITS = 40  # rows of a shard, in keyed_row_groups (a shard holds fewer than 2**40 rows)


@dataclass
class ShardHandle:
    path: str
    file: pq.ParquetFile
    row_group_starts: np.ndarray  # first row of each row group, plus the total at the end

    def __post_init__(self) -> None:
        self._starts: list[int] = self.row_group_starts.tolist()  # bisect beats numpy here

    def read_row_group(self, rg: int, columns: list[str] | None) -> pa.Table:
        try:
            return self.file.read_row_group(rg, columns=columns)
        except (OSError, pa.ArrowException) as e:
            raise CorruptDatasetError(
                f"{self.path}: row group {rg} cannot be read ({e}); the shard is damaged — "
                "run `fedgroups verify` and rebuild the dataset") from e

    def read_rows(self, first: int, count: int, columns: list[str] | None) -> Iterator[pa.Table]:
        """Rows [first, first+count) one row group at a time (bounded memory), unchecked."""
        for rg, lo, hi in self.row_group_slices(first, count):
            yield self.read_row_group(rg, columns).slice(lo, hi - lo)

    def row_group_slices(self, first: int, count: int) -> Iterator[tuple[int, int, int]]:
        """(row group, first row in it, stop row in it) covering rows [first, first+count)."""
        stop = first + count
        starts = self._starts
        if first < 0 or stop > starts[-1]:
            raise CorruptDatasetError(
                f"{self.path}: the index asks for rows {first}..{stop} but the shard has "
                f"{starts[-1]}; the index is damaged — rebuild the dataset")
        rg = bisect.bisect_right(starts, first) - 1
        while first < stop:
            rg_start = starts[rg]
            rg_stop = starts[rg + 1]
            hi = min(stop, rg_stop)
            yield rg, first - rg_start, hi - rg_start
            first = hi
            rg += 1


@dataclass
class DecodedRowGroup:
    """A decoded row group: its rows (one record batch, without the key column) and its key
    column (dictionary-encoded if a stream's scan read it: see readahead.py). A group's
    rows are checked to be exactly one run of its key — by looking the run up in ``runs``
    (made on first use), or, once ``verified`` (the whole key column checked against the
    index, see tiling.py), not at all."""

    batch: pa.RecordBatch
    keys: pa.Array
    nbytes: int
    verified: bool = False
    _runs: dict[int, tuple[int, Any]] | None = None

    @classmethod
    def read(cls, h: ShardHandle, rg: int, columns: tuple[str, ...]) -> DecodedRowGroup:
        return cls.from_table(h.read_row_group(rg, [*columns, KEY_COLUMN]))

    @classmethod
    def from_table(cls, table: pa.Table) -> DecodedRowGroup:
        """From a row group read with the key column."""
        col = table.column(KEY_COLUMN)
        if col.num_chunks > 1 and pa.types.is_dictionary(col.type):  # dictionaries differ
            col = pa.chunked_array([c.dictionary_decode() for c in col.chunks])
        keys = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        batch = one_batch(table.drop_columns([KEY_COLUMN]))
        return cls(batch, keys, batch.nbytes + keys.nbytes)

    @property
    def runs(self) -> dict[int, tuple[int, Any]]:
        """First row of each run of equal keys -> (stop row, key)."""
        if self._runs is None:  # two threads may both make it: equal dicts
            keys, n = self.keys, len(self.keys)
            if pa.types.is_dictionary(keys.type):  # as a stream's scan reads it
                keys = keys.dictionary_decode()
            starts = np.zeros(min(n, 1), np.int64)
            if n > 1:
                changed = to_numpy(pc.not_equal(keys.slice(1), keys.slice(0, n - 1)))
                starts = np.concatenate([starts, np.flatnonzero(changed) + 1])
            bounds = starts.tolist()
            stops = [*bounds[1:], n]  # a run cut by the row group's end stops at n
            values = column_values(keys.take(from_numpy(starts)))
            self._runs = dict(zip(bounds, zip(stops, values)))
        return self._runs

    def holds(self, lo: int, hi: int, key: Any) -> bool:
        """Are rows lo:hi exactly one run of ``key`` (up to the row group's edges)?"""
        return self.verified or self.runs.get(lo) == (hi, key)


def one_batch(table: pa.Table) -> pa.RecordBatch:
    """The table as a single record batch (slicing a batch is cheaper than a table)."""
    batches = table.combine_chunks().to_batches()
    if len(batches) == 1:
        return batches[0]
    return pa.RecordBatch.from_pylist([], schema=table.schema) if not batches else \
        pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class _RowGroupCache:
    """LRU of decoded row groups by bytes; concurrent readers of one row group wait for it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._tables: OrderedDict[Any, Any] = OrderedDict()  # values have .nbytes
        self._loading: dict[Any, threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def peek(self, key: Any) -> Any:
        """The cached value or None (never waits, never loads)."""
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
            return table

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        while True:
            with self._lock:
                table = self._tables.get(key)
                if table is not None:
                    self._tables.move_to_end(key)
                    return table
                event = self._loading.get(key)
                if event is None:
                    event = self._loading[key] = threading.Event()
                    break
            event.wait()  # another thread is reading it; then look again
        try:
            table = load()
            with self._lock:
                if table.nbytes <= self.capacity:
                    self._tables[key] = table
                    self._bytes += table.nbytes
                    while self._bytes > self.capacity:
                        _, old = self._tables.popitem(last=False)
                        self._bytes -= old.nbytes
            return table
        finally:
            with self._lock:
                del self._loading[key]
            event.set()


class ShardCache:
    """Shard files of a dataset, checked once, opened once per thread (thread-safe)."""

    def __init__(self, root: str, shards: list[dict], cache_bytes: int = DEFAULT_CACHE_BYTES,
                 build_id: str | None = None, schema: pa.Schema | None = None) -> None:
        self.root = root
        self.shards = shards
        self.build_id = build_id  # the manifest's: every shard opened must carry it
        # the manifest's as Parquet gives it back (key column included): every shard's too
        self.schema = schema
        self.cache_bytes = cache_bytes
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        # per shard: path, footer, row group starts and bytes, and the one open file every
        # read goes through (a file swapped in at the path later is never read)
        self._checked: dict[int, OpenShard] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cache = _RowGroupCache(self.cache_bytes)
        self._keyed: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # sent to DataLoader workers (spawn) or other processes: paths only, no handles
        return {"root": self.root, "shards": self.shards, "cache_bytes": self.cache_bytes,
                "build_id": self.build_id, "schema": self.schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def clear_cache(self) -> None:
        """Forget decoded row groups (e.g. to time uncached reads)."""
        self._cache = _RowGroupCache(self.cache_bytes)

    def get(self, shard: int) -> ShardHandle:
        if self._pid != os.getpid():  # forked (DataLoader worker): reopen, never share handles
            self._reset()
        handles: dict[int, ShardHandle] | None = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        h = handles.get(shard)
        if h is None:
            path, md, starts, _, source = self._check(shard)
            try:
                f = pq.ParquetFile(source, metadata=md, page_checksum_verification=True)
            except (OSError, pa.ArrowException) as e:
                raise CorruptDatasetError(f"{path}: not a readable Parquet file ({e})") from e
            h = handles[shard] = ShardHandle(path, f, starts)
        return h

    def read_part(self, shard: int, first: int, count: int, columns: list[str],
                  key: Any) -> list[pa.RecordBatch]:
        """All rows of one small group part (a faster path of :meth:`read_group_rows`)."""
        h = self.get(shard)
        starts = h._starts
        rg = bisect.bisect_right(starts, first) - 1
        if rg < 0 or first + count > starts[rg + 1]:  # crosses row groups, or out of range
            return list(self.read_group_rows(shard, first, count, columns, key))
        cols = tuple(columns)
        rows = self._cache.get((shard, rg, cols), lambda: DecodedRowGroup.read(h, rg, cols))
        lo = first - starts[rg]
        if not rows.holds(lo, lo + count, key):
            raise CorruptDatasetError(
                f"{h.path}: rows {first}..{first + count} (row group {rg}) should hold "
                f"exactly group {key!r}; the index and shard disagree — rebuild the dataset")
        return [rows.batch.slice(lo, count)]

    def decoded_row_group(self, shard: int, rg: int, columns: tuple[str, ...],
                          table: pa.Table | None = None) -> DecodedRowGroup:
        """Row group ``rg`` of ``shard``, decoded (and cached) with its key runs; made from
        ``table`` (its rows, decoded already with the key column) if given and not cached
        meanwhile."""
        h = self.get(shard)  # first: after a fork it makes this process its own cache
        key = (shard, rg, columns)
        if table is not None:
            return self._cache.get(key, lambda: DecodedRowGroup.from_table(table))
        return self._cache.get(key, lambda: DecodedRowGroup.read(h, rg, columns))

    def cached_row_group(self, shard: int, rg: int, columns: tuple[str, ...],
                         ) -> DecodedRowGroup | None:
        """Row group ``rg`` of ``shard`` if it is in the cache (never reads)."""
        return self._cache.peek((shard, rg, columns))

    def read_group_rows(self, shard: int, first: int, count: int, columns: list[str],
                        key: Any) -> Iterator[pa.RecordBatch]:
        """The rows of one group part, row group by row group, checked against ``key``."""
        h = self.get(shard)
        cols = tuple(columns)
        for rg, lo, hi in h.row_group_slices(first, count):
            if lo == 0 and hi == h._starts[rg + 1] - h._starts[rg]:
                # a big group's inner row group: stream it, do not cache
                rows = DecodedRowGroup.read(h, rg, cols)
            else:
                rows = self._cache.get((shard, rg, cols),
                                       lambda h=h, rg=rg: DecodedRowGroup.read(h, rg, cols))
            if not rows.holds(lo, hi, key):
                raise CorruptDatasetError(
                    f"{h.path}: rows {first}..{first + count} (row group {rg}) should hold "
                    f"exactly group {key!r}; the index and shard disagree — rebuild the dataset")
            yield rows.batch.slice(lo, hi - lo)

    def keyed_row_groups(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First row, stop row and number of each row group of ``shard``, the rows as
        ``shard << ROW_BITS | row``: the arrays of several shards, concatenated in shard
        order, stay sorted, so one search places rows of all of them."""
        found = self._keyed.get(shard)
        if found is None:  # two threads may both make it: equal arrays
            starts = self._check(shard)[2]
            base = np.int64(shard) << ROW_BITS
            found = self._keyed[shard] = (starts[:-1] + base, starts[1:] + base,
                                          np.arange(len(starts) - 1, dtype=np.int64))
        return found

    def row_group_bytes(self, shard: int) -> list[int]:
        """Uncompressed bytes of each row group of ``shard`` (from its footer)."""
        return self._check(shard)[3]

    def file(self, shard: int) -> pa.NativeFile:
        """The open, checked file of ``shard`` (thread-safe positional reads)."""
        return self._check(shard)[4]

    def _check(self, shard: int) -> OpenShard:
        found = self._checked.get(shard)
        if found is not None:
            return found
        with self._lock:
            found = self._checked.get(shard) or self._open_checked(shard)
            self._checked[shard] = found
        return found

    def _open_checked(self, shard: int) -> OpenShard:
        if not 0 <= shard < len(self.shards):
            raise CorruptDatasetError(
                f"{self.root}: the index names shard {shard} but the manifest lists "
                f"{len(self.shards)}; the index is damaged — rebuild the dataset")
        return open_checked(self.root, self.shards[shard], self.build_id, self.schema)
