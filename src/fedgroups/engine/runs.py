"""Map side of the local engine: key every example and spill rows into per-partition runs.

A run is an uncompressed Arrow IPC file holding rows of one partition in source order,
with the key and the example's ordinal (unit << 40 | row) as extra columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.errors import KeyFunctionError
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN
from fedgroups.keys.base import KeyFunction, KeyRowError
from fedgroups.keys.hashing import partition_of
from fedgroups.sources.base import Source

UNIT_SHIFT = 40  # rows per unit are below 2**40
RUN_BATCH_ROWS = 16_384


@dataclass
class Run:
    partition: int
    path: str
    num_rows: int
    num_bytes: int


@dataclass
class MapResult:
    runs: list[Run] = field(default_factory=list)
    rows_in: int = 0
    dropped: int = 0
    key_type: str | None = None
    drop_examples: list[str] = field(default_factory=list)  # a few locations, for the report


@dataclass
class RunSpiller:
    """Buffers keyed rows per partition and writes them out as runs past a byte budget."""

    root: str
    name: str  # unique per task, e.g. "t0003"
    num_partitions: int
    spill_bytes: int
    result: MapResult = field(default_factory=MapResult)
    _buffers: dict[int, list[pa.Table]] = field(default_factory=dict)
    _buffered: int = 0
    _seq: int = 0

    def add(self, table: pa.Table, partitions: np.ndarray) -> None:
        order = np.argsort(partitions, kind="stable")
        sorted_parts = partitions[order]
        table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [len(order)]])
        for a, b in zip(starts, stops):
            self._buffers.setdefault(int(sorted_parts[a]), []).append(table.slice(a, b - a))
        self._buffered += table.nbytes
        if self._buffered >= self.spill_bytes:
            self.spill()

    def spill(self) -> None:
        for p, tables in sorted(self._buffers.items()):
            t = pa.concat_tables(tables)
            path = os.path.join(self.root, f"p{p:05d}", f"{self.name}-{self._seq:05d}.arrow")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
                w.write_table(t, max_chunksize=RUN_BATCH_ROWS)
            self.result.runs.append(Run(p, path, t.num_rows, t.nbytes))
        self._seq += 1
        self._buffers.clear()
        self._buffered = 0
        pa.default_memory_pool().release_unused()  # keep the allocator's cache small


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
        first = int(pc.index(missing, True).as_py())
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
        ordinals = ordinals[np.asarray(keep)]
        if table.num_rows == 0:
            return None
    return table.append_column(KEY_COLUMN, keys).append_column(
        ORDINAL_COLUMN, pa.array(ordinals, pa.uint64()))


def map_units(
    units: list[int], source: Source, keyfn: KeyFunction, *, runs_root: str, name: str,
    num_partitions: int, spill_bytes: int, on_missing_key: str, progress: object = None,
) -> MapResult:
    """Read the given units of a source and spill their rows as runs."""
    spiller = RunSpiller(runs_root, name, num_partitions, spill_bytes)
    result = spiller.result
    for unit in units:
        row = 0
        for batch in source.read(unit):
            n = batch.num_rows
            if n == 0:
                continue
            ordinals = (np.uint64(unit) << np.uint64(UNIT_SHIFT)) + np.arange(row, row + n,
                                                                            dtype=np.uint64)
            table = key_batch(batch, ordinals, keyfn, source, unit, row, on_missing_key, result)
            if table is not None:
                spiller.add(table, partition_of(table.column(KEY_COLUMN), num_partitions))
            row += n
            result.rows_in += n
            if progress is not None:
                with progress.get_lock():  # type: ignore[attr-defined]
                    progress.value += n  # type: ignore[attr-defined]
    spiller.spill()
    return result
