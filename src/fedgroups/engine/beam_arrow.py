"""The Arrow work of the Beam engine, kept free of Beam so it is testable on its own.

Map side: keyed rows are cut by partition into chunks (Arrow IPC bytes), so one Beam
element carries thousands of examples. Reduce side: one partition's chunks are sorted by
(key, ordinal) within a memory budget — sorted runs spill to local disk and are merged
(``reduce.merge_sorted_runs``) — and written by the format's ``ShardWriter``.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.engine.reduce import merge_sorted_runs
from fedgroups.engine.runs import RUN_BATCH_ROWS
from fedgroups.errors import KeyFunctionError, SettingError, SourceError
from fedgroups.format.finish import PartitionResult
from fedgroups.format.manifest import file_sha256
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN
from fedgroups.format.writer import ROW_GROUP_BYTES, SHARD_BYTES, ShardWriter
from fedgroups.keys.hashing import partition_of

MAX_PARTITIONS = 4096
TARGET_PARTITION_BYTES = 256 << 20
CHUNK_BYTES = 4 << 20  # a map-side element carries about this much data
MAP_BUFFER_BYTES = 64 << 20  # a map worker holds at most about this much before emitting
SORT_BUDGET = 256 << 20  # a reduce worker sorts this much in memory before spilling a run
_SORT = [(KEY_COLUMN, "ascending"), (ORDINAL_COLUMN, "ascending")]


def default_num_shards(estimated_bytes: int | None) -> int:
    """Partitions (= reduce tasks, and at least as many shard files) for an input size."""
    if estimated_bytes is None:
        return 32
    return max(4, min(MAX_PARTITIONS, math.ceil(estimated_bytes * 1.25 / TARGET_PARTITION_BYTES)))


# ---- output storage: local paths, or remote URLs through fsspec -----------------------------

def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def filesystem(path: str) -> Any:
    import fsspec
    try:
        return fsspec.core.url_to_fs(path)[0]
    except (ImportError, ValueError) as e:
        raise SettingError(
            f"{path}: no filesystem for this URL ({e}); install its fsspec package on the "
            "driver and the workers (gcsfs for gs://, s3fs for s3://)") from e


def upload(local: str, remote: str) -> None:
    """Copy one finished local file to remote storage (whole-object write: no partial file)."""
    fs = filesystem(remote)
    with open(local, "rb") as src, fs.open(remote, "wb") as dst:
        shutil.copyfileobj(src, dst, 8 << 20)



# ---- chunks: the elements that cross the shuffle ------------------------------------------

def encode_chunk(table: pa.Table, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_chunk(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


@dataclass
class ChunkCutter:
    """Buffers keyed tables per partition and hands out (partition, chunk bytes) pairs.

    A partition's buffer is emitted once it reaches ``chunk_bytes``; all are emitted once
    the total passes ``buffer_bytes`` and at ``flush()``.
    """

    num_partitions: int
    compression: str | None = None
    chunk_bytes: int = CHUNK_BYTES
    buffer_bytes: int = MAP_BUFFER_BYTES
    _buffers: dict[int, list[pa.Table]] = field(default_factory=dict)
    _sizes: dict[int, int] = field(default_factory=dict)
    _total: int = 0

    def add(self, table: pa.Table) -> Iterator[tuple[int, bytes]]:
        parts = partition_of(table.column(KEY_COLUMN), self.num_partitions)
        order = np.argsort(parts, kind="stable")
        sorted_parts = parts[order]
        table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        stops = np.concatenate([bounds, [len(order)]]).astype(np.int64)
        for a, b in zip(starts, stops):
            p = int(sorted_parts[a])
            piece = table.slice(a, b - a)
            self._buffers.setdefault(p, []).append(piece)
            self._sizes[p] = self._sizes.get(p, 0) + piece.nbytes
            self._total += piece.nbytes
            if self._sizes[p] >= self.chunk_bytes:
                yield self._emit(p)
        if self._total >= self.buffer_bytes:
            yield from self.flush()

    def _emit(self, p: int) -> tuple[int, bytes]:
        # rows of a PCollection may infer different (compatible) types batch to batch
        table = pa.concat_tables(self._buffers.pop(p), promote_options="permissive")
        self._total -= self._sizes.pop(p)
        return p, encode_chunk(table, self.compression)

    def flush(self) -> Iterator[tuple[int, bytes]]:
        for p in sorted(self._buffers):
            yield self._emit(p)


def content_ordinals(rows: list[dict[str, Any]]) -> np.ndarray:
    """An order for rows that have no source position: a stable hash of each row's content.

    A PCollection has no order, so rows of one group are ordered by this hash; equal rows
    are interchangeable, so the order is deterministic whatever the runner's bundling.
    """
    out = np.empty(len(rows), np.uint64)
    for i, row in enumerate(rows):
        text = repr(sorted(row.items())) if isinstance(row, dict) else repr(row)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


# ---- map statistics, merged across workers ------------------------------------------------

@dataclass
class MapSummary:
    """What the map side saw; merged into one for the whole input."""

    rows_in: int = 0
    dropped: int = 0
    key_types: set[str] = field(default_factory=set)
    drop_examples: list[str] = field(default_factory=list)
    schema: pa.Schema | None = None  # inferred input schema (PCollection input only)

    def merge(self, other: MapSummary) -> MapSummary:
        self.rows_in += other.rows_in
        self.dropped += other.dropped
        self.key_types |= other.key_types
        self.drop_examples = (self.drop_examples + other.drop_examples)[:5]
        if other.schema is not None:
            self.schema = other.schema if self.schema is None else unify_schemas(
                self.schema, other.schema)
        return self

    def key_type(self, spec: str) -> pa.DataType:
        types = sorted(t for t in self.key_types if t != "null")
        if len(types) > 1:
            raise KeyFunctionError(
                f"the key function {spec!r} returned keys of several types ({types}); "
                "all keys must be of one type")
        return pa.type_for_alias(types[0]) if types else pa.string()

    def check(self, spec: str, what: str) -> None:
        if self.rows_in == 0:
            raise SourceError(f"the input is empty: {what} has no examples")
        if self.rows_in == self.dropped:
            raise KeyFunctionError(
                f"every one of the {self.rows_in} examples was dropped for having no key; "
                f"check the key {spec!r}")


def unify_schemas(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    try:
        return pa.unify_schemas([a, b], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SourceError(f"examples of the input disagree on column types: {e}") from e


def output_schema(input_schema: pa.Schema, key_type: pa.DataType) -> pa.Schema:
    """The shard schema: key column first, then the input's columns."""
    return pa.schema([pa.field(KEY_COLUMN, key_type, nullable=False),
                      *[f for f in input_schema if f.name not in (KEY_COLUMN, ORDINAL_COLUMN)]])


# ---- reduce: one partition, bounded memory ------------------------------------------------

def _sorted(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=_SORT))


@dataclass
class PartitionSorter:
    """Sorts a stream of tables by (key, ordinal) holding at most ~``budget`` bytes.

    Past the budget, the buffer is sorted and spilled to ``scratch`` as a run; the runs are
    merged a window at a time, so a partition (or a group) larger than memory is never
    held whole.
    """

    scratch: str
    budget: int
    schema: pa.Schema  # output schema plus the ordinal column
    runs: list[str] = field(default_factory=list)
    _buffer: list[pa.Table] = field(default_factory=list)
    _held: int = 0

    def add(self, table: pa.Table) -> None:
        table = table.select(self.schema.names)
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        self._buffer.append(table)
        self._held += table.nbytes
        if self._held >= self.budget:
            self._spill()

    def _spill(self) -> None:
        if not self._buffer:
            return
        table = _sorted(pa.concat_tables(self._buffer))
        self._buffer, self._held = [], 0
        path = os.path.join(self.scratch, f"run-{len(self.runs):05d}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table, max_chunksize=RUN_BATCH_ROWS)
        self.runs.append(path)

    def sorted_tables(self) -> Iterator[pa.Table]:
        if not self.runs:  # it all fit: one in-memory sort
            if self._buffer:
                table = _sorted(pa.concat_tables(self._buffer))
                self._buffer, self._held = [], 0
                yield table
            return
        self._spill()
        yield from merge_sorted_runs(self.runs)


def write_partition(
    partition: int, chunks: Iterable[bytes], *, root: str, schema: pa.Schema,
    text_column: str | None, sort_budget: int = SORT_BUDGET, shard_bytes: int = SHARD_BYTES,
    scratch_parent: str | None = None, group_columns: tuple[str, ...] = (),
) -> tuple[PartitionResult, dict[str, int]]:
    """Sort one partition's chunks and write its shard files under ``root``.

    ``chunks`` is consumed once, as a stream. Returns the partition's result (shard files
    with checksums, index rows with per-group examples, bytes and words) and counters.
    """
    scratch = tempfile.mkdtemp(prefix=f"fedgroups-p{partition:05d}-", dir=scratch_parent)
    try:
        sorter = PartitionSorter(scratch, sort_budget,
                                 schema.append(pa.field(ORDINAL_COLUMN, pa.uint64())))
        rows = 0
        for data in chunks:
            table = decode_chunk(data)
            rows += table.num_rows
            sorter.add(table)
        writer = ShardWriter(root=root, partition=partition, schema=schema,
                             text_column=text_column, shard_bytes=shard_bytes,
                             row_group_bytes=max(1 << 10, min(ROW_GROUP_BYTES, shard_bytes // 4)),
                             group_columns=group_columns)
        for table in sorter.sorted_tables():
            writer.write(table.drop_columns([ORDINAL_COLUMN]))
        index = writer.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    shards = []
    for s in writer.shards:
        full = os.path.join(root, s.path)
        shards.append({"path": s.path, "num_rows": s.num_rows, "num_bytes": s.num_bytes,
                       "file_bytes": os.path.getsize(full), "sha256": file_sha256(full)})
    counters = {"rows": rows, "spilled_runs": len(sorter.runs)}
    return PartitionResult(partition=partition, shards=shards, index=index), counters
