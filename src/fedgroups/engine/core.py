"""What both engines do the same way, so that they write the same dataset by construction.

Map side: an example's ordinal (unit << 40 | row), its key (``key_batch``), its partition
(``cut_by_partition``), the partition count, and the checks on what the map saw. Reduce
side: rows sorted by (key, ordinal) within a memory budget (``PartitionSorter``: sorted
runs spill to local disk and are merged a window at a time) and written into shard files
by the format's ``ShardWriter`` (``write_partition_files``). The local engine moves rows
between the two sides as Arrow IPC run files, the Beam engine as shuffle elements; nothing
else differs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import from_numpy, scalar, to_numpy
from fedgroups.errors import KeyFunctionError, SettingError, SourceError
from fedgroups.format.finish import PartitionResult
from fedgroups.format.manifest import file_sha256
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN
from fedgroups.format.writer import ROW_GROUP_BYTES, SHARD_BYTES, ShardWriter
from fedgroups.keys.base import KeyFunction, KeyRowError
from fedgroups.keys.hashing import partition_of
from fedgroups.sources.base import Source

UNIT_SHIFT = 40  # rows per unit are below 2**40
MAX_PARTITIONS = 4096
# A partition is sorted in memory when it fits a reduce worker's sort budget; planned
# partitions aim at that budget but at most this (about one shard file), so a worker with
# a large budget still gets many partitions to spread over cores and to show progress on.
MAX_PARTITION_BYTES = SHARD_BYTES
MERGE_WINDOW_BYTES = 1 << 20  # what a merge holds of each sorted run at a time
MAX_WINDOW_ROWS = 16_384


# ---- map side ------------------------------------------------------------------------------

def unit_ordinals(unit: int, row0: int, n: int) -> np.ndarray:
    """An example's identity and order in the source: unit << 40 | row."""
    return (np.uint64(unit) << np.uint64(UNIT_SHIFT)) + np.arange(row0, row0 + n, dtype=np.uint64)


@dataclass
class MapResult:
    """What keying some of the input saw (one task's, one bundle's)."""

    rows_in: int = 0
    dropped: int = 0
    key_type: str | None = None
    drop_examples: list[str] = field(default_factory=list)  # a few locations, for the report


def key_batch(
    batch: pa.RecordBatch, ordinals: np.ndarray, keyfn: KeyFunction, source: Source,
    unit: int, row0: int, on_missing_key: str, result: MapResult,
) -> pa.Table | None:
    """Add the key and ordinal columns; apply the missing-key policy. None if all dropped."""
    try:
        keys = keyfn.keys(batch, ordinals)
    except KeyRowError as e:
        raise KeyFunctionError(f"{source.location(unit, row0 + e.row)}: {e.message}") from e
    except KeyFunctionError as e:
        raise KeyFunctionError(f"{source.location(unit, row0)} (batch): {e}") from e
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    type_name = str(keys.type)
    if result.key_type is None:
        result.key_type = type_name
    elif result.key_type != type_name and keys.null_count < len(keys):
        raise KeyFunctionError(
            f"{source.location(unit, row0)}: the key function returned {type_name} keys here "
            f"but {result.key_type} keys before; all keys must have one type"
        )
    table = pa.Table.from_batches([batch])
    if keys.null_count:
        missing = pc.is_null(keys)
        first = int(pc.index(missing, scalar(True, pa.bool_())).as_py())
        where = source.location(unit, row0 + first)
        if on_missing_key == "error":
            raise KeyFunctionError(
                f"{where}: the key {keyfn.spec!r} gives no group for this example (null key). "
                "Fix the data, or pass on_missing_key='drop' (--on-missing-key drop) to drop "
                "and count such examples"
            )
        keep = pc.invert(missing)
        result.dropped += keys.null_count
        if len(result.drop_examples) < 5:
            result.drop_examples.append(where)
        table = table.filter(keep)
        keys = keys.filter(keep)
        ordinals = ordinals[to_numpy(keep)]
        if table.num_rows == 0:
            return None
    return table.append_column(KEY_COLUMN, keys).append_column(
        ORDINAL_COLUMN, from_numpy(ordinals, pa.uint64()))


def cut_by_partition(table: pa.Table, num_partitions: int) -> Iterator[tuple[int, pa.Table]]:
    """The rows of each partition (by the hash of their key), in partition order; each
    piece keeps the rows' order."""
    parts = partition_of(table.column(KEY_COLUMN), num_partitions)
    order = np.argsort(parts, kind="stable")
    sorted_parts = parts[order]
    table = table.take(from_numpy(order))
    bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    stops = np.concatenate([bounds, [len(order)]]).astype(np.int64)
    for a, b in zip(starts, stops):
        yield int(sorted_parts[a]), table.slice(a, b - a)


def partition_count(estimated_bytes: int | None, *, sort_budget: int, minimum: int,
                    unknown: int) -> int:
    """Partitions for an input: each about one reduce worker's in-memory sort (at most
    MAX_PARTITION_BYTES), with 25% slack for the estimate; ``unknown`` without one."""
    if estimated_bytes is None:
        n = unknown
    else:
        per = min(sort_budget, MAX_PARTITION_BYTES)
        n = max(minimum, math.ceil(estimated_bytes * 1.25 / per))
    return max(1, min(n, MAX_PARTITIONS))


def check_map_totals(rows_in: int, dropped: int, spec: str, what: str) -> None:
    if rows_in == 0:
        raise SourceError(f"the input is empty: {what} has no examples")
    if rows_in == dropped:
        raise KeyFunctionError(
            f"every one of the {rows_in} examples was dropped for having no key; "
            f"check the key {spec!r}")


def key_type_of(type_names: Iterable[str], spec: str) -> pa.DataType:
    """The one key type the map side saw (string when every key was null)."""
    types = sorted({t for t in type_names if t and t != "null"})
    if len(types) > 1:
        raise KeyFunctionError(
            f"the key function {spec!r} returned keys of several types ({types}); "
            "all keys must be of one type")
    return pa.type_for_alias(types[0]) if types else pa.string()


def output_schema(input_schema: pa.Schema, key_type: pa.DataType) -> pa.Schema:
    """The shard schema: key column first, then the input's columns; the input schema's
    metadata (a source keeps only Hugging Face Features there) goes with it."""
    return pa.schema([pa.field(KEY_COLUMN, key_type, nullable=False),
                      *[f for f in input_schema if f.name not in (KEY_COLUMN, ORDINAL_COLUMN)]],
                     metadata=input_schema.metadata)


# ---- reduce side: sort by (key, ordinal) in bounded memory ---------------------------------

def sort_order(keys: pa.Array | pa.ChunkedArray, ordinals: np.ndarray) -> np.ndarray:
    """Row order sorting by (key, ordinal). Keys are ranked through their distinct values,
    so the string comparisons happen once per distinct key, not once per row pair."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if pa.types.is_integer(keys.type):
        rank = to_numpy(keys)
    else:
        encoded = pc.dictionary_encode(keys)
        by_value = to_numpy(pc.sort_indices(encoded.dictionary))
        ranks = np.empty(len(by_value), np.int64)
        ranks[by_value] = np.arange(len(by_value))
        rank = ranks[to_numpy(encoded.indices)]
    return np.lexsort((ordinals, rank))


def sort_table(table: pa.Table) -> pa.Table:
    order = sort_order(table.column(KEY_COLUMN), to_numpy(table.column(ORDINAL_COLUMN)))
    return table.take(from_numpy(order))


def window_rows(table: pa.Table) -> int:
    """Rows in about MERGE_WINDOW_BYTES of this table (16 .. MAX_WINDOW_ROWS)."""
    per_row = max(1, table.nbytes // max(table.num_rows, 1))
    return int(min(MAX_WINDOW_ROWS, max(16, MERGE_WINDOW_BYTES // per_row)))


def write_run(path: str, table: pa.Table, batch_rows: int | None = None) -> None:
    """An Arrow IPC file of ``table`` in batches (by default of about MERGE_WINDOW_BYTES,
    so that merging a sorted run holds one small window of it)."""
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=batch_rows or window_rows(table))


def read_run(path: str) -> pa.Table:
    with pa.OSFile(path, "rb") as f:
        return pa.ipc.open_file(f).read_all()


def _run_batches(path: str) -> Iterator[pa.Table]:
    """The batches of a sorted run, read one at a time (the file is opened, not loaded)."""
    with pa.OSFile(path, "rb") as f:
        reader = pa.ipc.open_file(f)
        for i in range(reader.num_record_batches):
            yield pa.Table.from_batches([reader.get_batch(i)])


def _upto(table: pa.Table, key: pa.Scalar, ordinal: pa.Scalar) -> int:
    """How many leading rows of a sorted table are <= (key, ordinal)."""
    keys = table.column(KEY_COLUMN)
    le = pc.or_(pc.less(keys, key),
                pc.and_(pc.equal(keys, key),
                        pc.less_equal(table.column(ORDINAL_COLUMN), ordinal)))
    return int(pc.sum(le).as_py() or 0)


def merge_sorted_runs(paths: list[str]) -> Iterator[pa.Table]:
    """K-way merge of sorted runs, yielding sorted tables; memory ~ k run batches."""
    streams = [_run_batches(p) for p in paths]
    heads: list[pa.Table | None] = [next(s, None) for s in streams]
    while True:
        live = [i for i, h in enumerate(heads) if h is not None]
        if not live:
            return
        # Everything up to the smallest "last row" among the heads can be emitted safely.
        # Compared as Python values, kept as Arrow scalars (see fedgroups.arrays: making
        # scalars from Python values imports pandas).
        lasts = {i: (heads[i].column(KEY_COLUMN)[-1],  # type: ignore[union-attr]
                     heads[i].column(ORDINAL_COLUMN)[-1]) for i in live}  # type: ignore
        bound = lasts[min(live, key=lambda i: (lasts[i][0].as_py(), lasts[i][1].as_py()))]
        out = []
        for i in live:
            h = heads[i]
            assert h is not None
            n = _upto(h, *bound)
            if n:
                out.append(h.slice(0, n))
            rest = h.slice(n)
            heads[i] = rest if rest.num_rows else next(streams[i], None)
        yield sort_table(pa.concat_tables(out))


@dataclass
class PartitionSorter:
    """Sorts a stream of tables by (key, ordinal) holding at most ~``budget`` bytes.

    Past the budget, the buffer is sorted and spilled to ``scratch`` as a run; the runs are
    merged a window at a time (at most ``fan_in`` at once, longer runs first made by
    merging), so a partition or a group larger than memory is never held whole.
    """

    scratch: str
    budget: int
    schema: pa.Schema  # output schema plus the ordinal column
    name: str = "run"  # file name prefix in ``scratch``
    runs: list[str] = field(default_factory=list)  # sorted run files not yet merged
    spilled: int = 0  # sorted runs written (the merges' own files not counted)
    _buffer: list[pa.Table] = field(default_factory=list)
    _held: int = 0
    _files: int = 0

    def add(self, table: pa.Table) -> None:
        table = table.select(self.schema.names)
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        self._buffer.append(table)
        self._held += table.nbytes
        if self._held >= self.budget:
            self._spill()

    def _path(self) -> str:
        self._files += 1
        return os.path.join(self.scratch, f"{self.name}-{self._files:05d}.arrow")

    def _spill(self) -> None:
        if not self._buffer:
            return
        table = sort_table(pa.concat_tables(self._buffer))
        self._buffer, self._held = [], 0
        path = self._path()
        write_run(path, table)
        del table
        pa.default_memory_pool().release_unused()  # keep the allocator's cache small
        self.runs.append(path)
        self.spilled += 1

    def sorted_tables(self) -> Iterator[pa.Table]:
        if not self.runs:  # it all fit: one in-memory sort
            if self._buffer:
                table = sort_table(pa.concat_tables(self._buffer))
                self._buffer, self._held = [], 0
                yield table
            return
        self._spill()
        fan_in = max(2, self.budget // (2 * MERGE_WINDOW_BYTES))
        while len(self.runs) > fan_in:
            merged = []
            for j in range(0, len(self.runs), fan_in):
                path = self._path()
                self._merge_to_file(self.runs[j:j + fan_in], path)
                merged.append(path)
            self.runs = merged
        yield from merge_sorted_runs(self.runs)
        for p in self.runs:
            os.remove(p)

    @staticmethod
    def _merge_to_file(paths: list[str], out: str) -> None:
        writer = sink = None
        try:
            for table in merge_sorted_runs(paths):
                if writer is None:
                    sink = pa.OSFile(out, "wb")
                    writer = pa.ipc.new_file(sink, table.schema)
                writer.write_table(table, max_chunksize=window_rows(table))
        finally:
            if writer is not None:
                writer.close()
            if sink is not None:
                sink.close()
        for p in paths:
            os.remove(p)


def write_partition_files(
    partition: int, sorted_tables: Iterable[pa.Table], *, root: str, schema: pa.Schema,
    text_column: str | None, shard_bytes: int = SHARD_BYTES, group_columns: tuple[str, ...] = (),
) -> PartitionResult:
    """Write one partition's rows, sorted by (key, ordinal), as shard files under ``root``;
    return its shard records (with checksums) and index rows."""
    writer = ShardWriter(root=root, partition=partition, schema=schema, text_column=text_column,
                         shard_bytes=shard_bytes, group_columns=group_columns,
                         row_group_bytes=min(ROW_GROUP_BYTES, max(shard_bytes // 4, 1)))
    for table in sorted_tables:
        writer.write(table.drop_columns([ORDINAL_COLUMN]))
    index = writer.close()
    shards = []
    for s in writer.shards:
        full = os.path.join(root, s.path)
        shards.append({"path": s.path, "num_rows": s.num_rows, "num_bytes": s.num_bytes,
                       "file_bytes": os.path.getsize(full), "sha256": file_sha256(full)})
    return PartitionResult(partition=partition, shards=shards, index=index)


def choose_text_column(schema: pa.Schema, text_column: str | None) -> str | None:
    """'auto': a string column named 'text', else the first string column, else none."""
    strings = [f.name for f in schema
               if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    if text_column == "auto":
        return "text" if "text" in strings else (strings[0] if strings else None)
    if text_column is not None and text_column not in strings:
        raise SettingError(
            f"text_column {text_column!r} is not a string column of the input; string columns: "
            f"{strings or 'none'}")
    return text_column
