"""Planning a local build: memory budgets and partition counts (pure arithmetic)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fedgroups.engine.core import MAX_PARTITIONS, partition_count
from fedgroups.errors import SettingError

# What a Python process costs before it holds data: imports (~100 MiB) plus the Parquet/JSON
# readers' decode buffers (~60-100 MiB, measured on 1 KiB text rows).
PROCESS_BASE_BYTES = 200 << 20
MIN_WORKER_BUDGET = 24 << 20

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def parse_bytes(value: str | int, setting: str = "memory_limit") -> int:
    """'2GB', '512MiB', '1.5g' or an int → bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise SettingError(
                f"{setting} {value!r} is not a size; write e.g. 2GB, 512MB or 1073741824"
            )
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise SettingError(f"{setting} must be positive, got {value!r}")
    return n


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    workers: int
    memory_limit: int
    worker_budget: int  # bytes one worker may hold in data
    spill_bytes: int  # a map worker writes its buffers out beyond this
    sort_in_memory_bytes: int  # a partition up to this is sorted in memory, else merged
    num_partitions: int


def make_plan(
    *, workers: int | None, memory_limit: int, estimated_bytes: int | None,
    num_partitions: int | None = None,
) -> BuildPlan:
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise SettingError(f"workers must be at least 1, got {workers}")
    processes = workers + (1 if workers > 1 else 0)
    budget = (memory_limit - processes * PROCESS_BASE_BYTES) // workers
    if budget < MIN_WORKER_BUDGET:
        need = processes * PROCESS_BASE_BYTES + workers * MIN_WORKER_BUDGET
        raise SettingError(
            f"memory_limit {_size(memory_limit)} is too small for {workers} worker(s); "
            f"give at least {need / 2**20:.0f} MiB or fewer workers"
        )
    # Data is held about three times over at a peak (input, sorted copy, encoder buffers),
    # and the allocator keeps some freed memory: a quarter of the budget is safe.
    in_memory = budget // 4
    # A partition's rows are sorted in memory when they fit ``in_memory``: aim at that.
    if num_partitions is None:
        num_partitions = partition_count(estimated_bytes, sort_budget=in_memory,
                                         minimum=workers, unknown=4 * workers)
    num_partitions = max(1, min(num_partitions, MAX_PARTITIONS))
    return BuildPlan(workers=workers, memory_limit=memory_limit, worker_budget=budget,
                     spill_bytes=max(budget // 4, 8 << 20), sort_in_memory_bytes=in_memory,
                     num_partitions=num_partitions)
