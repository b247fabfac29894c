"""Map side of the local engine: key every example and spill rows into per-partition runs.

A run is an uncompressed Arrow IPC file holding rows of one partition in source order,
with the key and the example's ordinal (unit << 40 | row) as extra columns. Keying and
cutting by partition are the engines' shared core (``engine/core.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyarrow as pa

from fedgroups.engine.core import MapResult, cut_by_partition, key_batch, unit_ordinals, write_run
from fedgroups.keys.base import KeyFunction
from fedgroups.sources.base import Source

RUN_BATCH_ROWS = 16_384


@dataclass
class Run:
    partition: int
    path: str
    num_rows: int
    num_bytes: int


@dataclass
class LocalMapResult(MapResult):
    runs: list[Run] = field(default_factory=list)
    started: float = 0.0  # perf_counter when the task began (worker start-up, --verbose)


@dataclass
class RunSpiller:
    """Buffers keyed rows per partition and writes them out as runs past a byte budget."""

    root: str
    name: str  # unique per task, e.g. "t0003"
    num_partitions: int
    spill_bytes: int
    result: LocalMapResult = field(default_factory=LocalMapResult)
    _buffers: dict[int, list[pa.Table]] = field(default_factory=dict)
    _buffered: int = 0
    _seq: int = 0

    def add(self, table: pa.Table) -> None:
        for p, piece in cut_by_partition(table, self.num_partitions):
            self._buffers.setdefault(p, []).append(piece)
        self._buffered += table.nbytes
        if self._buffered >= self.spill_bytes:
            self.spill()

    def spill(self) -> None:
        for p, tables in sorted(self._buffers.items()):
            t = pa.concat_tables(tables)
            path = os.path.join(self.root, f"p{p:05d}", f"{self.name}-{self._seq:05d}.arrow")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_run(path, t, RUN_BATCH_ROWS)
            self.result.runs.append(Run(p, path, t.num_rows, t.nbytes))
        self._seq += 1
        self._buffers.clear()
        self._buffered = 0
        pa.default_memory_pool().release_unused()  # keep the allocator's cache small


def map_units(
    units: list[int], source: Source, keyfn: KeyFunction, *, runs_root: str, name: str,
    num_partitions: int, spill_bytes: int, on_missing_key: str, progress: object = None,
) -> LocalMapResult:
    """Read the given units of a source and spill their rows as runs."""
    spiller = RunSpiller(runs_root, name, num_partitions, spill_bytes)
    result = spiller.result
    for unit in units:
        row = 0
        for batch in source.read(unit):
            n = batch.num_rows
            if n == 0:
                continue
            table = key_batch(batch, unit_ordinals(unit, row, n), keyfn, source, unit, row,
                              on_missing_key, result)
            if table is not None:
                spiller.add(table)
            row += n
            result.rows_in += n
            if progress is not None:
                with progress.get_lock():  # type: ignore[attr-defined]
                    progress.value += n  # type: ignore[attr-defined]
    spiller.spill()
    return result
