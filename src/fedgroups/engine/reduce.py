"""Reduce side of the local engine: one partition's runs → sorted shards + index rows.

The runs are read one at a time into the shared ``PartitionSorter`` (``engine/core.py``):
a partition that fits the memory budget is sorted in one go; one that does not (a skewed
key, a group larger than RAM) is spilled as sorted runs and merged in bounded memory, so
no group is ever held whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from fedgroups.engine.core import PartitionSorter, read_run, write_partition_files
from fedgroups.engine.runs import Run
from fedgroups.format.finish import PartitionResult
from fedgroups.format.spec import ORDINAL_COLUMN
from fedgroups.format.writer import SHARD_BYTES


def reduce_partition(
    partition: int, runs: list[Run], *, root: str, schema: pa.Schema, text_column: str | None,
    sort_in_memory_bytes: int, scratch: str, shard_bytes: int = SHARD_BYTES,
    group_columns: tuple[str, ...] = (), times: ReduceTimes | None = None,
) -> PartitionResult:
    """Sort/merge one partition's runs and write its shards under ``root`` (and add the
    seconds spent reading+sorting and writing to ``times``)."""
    times = times if times is not None else ReduceTimes()
    t0 = time.perf_counter()
    sorter = PartitionSorter(scratch, sort_in_memory_bytes,
                             schema.append(pa.field(ORDINAL_COLUMN, pa.uint64())),
                             name=f"sorted-p{partition:05d}")
    for r in runs:
        sorter.add(read_run(r.path))
        os.remove(r.path)  # its rows are in the sorter now: free the disk as we go
    times.sort += time.perf_counter() - t0
    t1 = time.perf_counter()
    result = write_partition_files(partition, _timed(sorter.sorted_tables(), times), root=root,
                                   schema=schema, text_column=text_column,
                                   shard_bytes=shard_bytes, group_columns=group_columns)
    times.write += time.perf_counter() - t1 - times.pulled
    times.sort += times.pulled
    return result


@dataclass
class ReduceTimes:
    """Seconds one reduce task spent reading and sorting its runs vs writing shards."""

    sort: float = 0.0
    write: float = 0.0
    pulled: float = 0.0  # of the writing loop, seconds spent producing sorted tables


def _timed(tables: Iterator[pa.Table], times: ReduceTimes) -> Iterator[pa.Table]:
    while True:
        t = time.perf_counter()
        table = next(tables, None)
        times.pulled += time.perf_counter() - t
        if table is None:
            return
        yield table
