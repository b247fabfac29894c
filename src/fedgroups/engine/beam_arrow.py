"""The Arrow work of the Beam engine, kept free of Beam so it is testable on its own.

Map side: keyed rows are cut by partition into chunks (Arrow IPC bytes), so one Beam
element carries thousands of examples. Reduce side: one partition's chunks go through the
engines' shared ``PartitionSorter`` and ``write_partition_files`` (``engine/core.py``):
sorted by (key, ordinal) within a memory budget, spilled to local disk and merged past it.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.engine.core import (
    PartitionSorter,
    check_map_totals,
    cut_by_partition,
    key_type_of,
    partition_count,
    write_partition_files,
)
from fedgroups.errors import SourceError
from fedgroups.format.finish import PartitionResult
from fedgroups.format.spec import ORDINAL_COLUMN
from fedgroups.format.writer import SHARD_BYTES

CHUNK_BYTES = 4 << 20  # a map-side element carries about this much data
MAP_BUFFER_BYTES = 64 << 20  # a map worker holds at most about this much before emitting
SORT_BUDGET = 256 << 20  # a reduce worker sorts this much in memory before spilling a run


def default_num_shards(estimated_bytes: int | None) -> int:
    """Partitions (= reduce tasks, and at least as many shard files) for an input size:
    each about one default sort budget, so a typical partition is sorted without spilling."""
    return partition_count(estimated_bytes, sort_budget=SORT_BUDGET, minimum=4, unknown=32)


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
        for p, piece in cut_by_partition(table, self.num_partitions):
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
        return key_type_of(self.key_types, spec)

    def check(self, spec: str, what: str) -> None:
        check_map_totals(self.rows_in, self.dropped, spec, what)


def unify_schemas(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    try:
        return pa.unify_schemas([a, b], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SourceError(f"examples of the input disagree on column types: {e}") from e


# ---- reduce: one partition, bounded memory ------------------------------------------------

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
        result = write_partition_files(partition, sorter.sorted_tables(), root=root,
                                       schema=schema, text_column=text_column,
                                       shard_bytes=shard_bytes, group_columns=group_columns)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result, {"rows": rows, "spilled_runs": sorter.spilled}
