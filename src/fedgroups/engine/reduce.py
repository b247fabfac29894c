"""Reduce side of the local engine: one partition's runs → sorted shards + index rows.

The runs are read one at a time into the shared ``PartitionSorter`` (``engine/core.py``):
a partition that fits the memory budget is sorted in one go; one that does not (a skewed
key, a group larger than RAM) is spilled as sorted runs and merged in bounded memory, so
no group is ever held whole.
"""

from __future__ import annotations

import os

import pyarrow as pa

from fedgroups.engine.core import PartitionSorter, read_run, write_partition_files
from fedgroups.engine.runs import Run
from fedgroups.format.finish import PartitionResult
from fedgroups.format.spec import ORDINAL_COLUMN
from fedgroups.format.writer import SHARD_BYTES


def reduce_partition(
    partition: int, runs: list[Run], *, root: str, schema: pa.Schema, text_column: str | None,
    sort_in_memory_bytes: int, scratch: str, shard_bytes: int = SHARD_BYTES,
    group_columns: tuple[str, ...] = (),
) -> PartitionResult:
    """Sort/merge one partition's runs and write its shards under ``root``."""
    sorter = PartitionSorter(scratch, sort_in_memory_bytes,
                             schema.append(pa.field(ORDINAL_COLUMN, pa.uint64())),
                             name=f"sorted-p{partition:05d}")
    for r in runs:
        sorter.add(read_run(r.path))
        os.remove(r.path)  # its rows are in the sorter now: free the disk as we go
    return write_partition_files(partition, sorter.sorted_tables(), root=root, schema=schema,
                                 text_column=text_column, shard_bytes=shard_bytes,
                                 group_columns=group_columns)
