"""The embedded engine: map (key + spill runs) then reduce (sort + write), on all cores.

Worker processes are forked, so a key function defined in a notebook (a lambda) needs no
pickling; the shared state below is set just before the pool starts.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fedgroups.engine.core import check_map_totals, key_type_of, output_schema
from fedgroups.engine.phases import PhaseTimer
from fedgroups.engine.plan import BuildPlan
from fedgroups.engine.progress import Progress
from fedgroups.engine.reduce import ReduceTimes, reduce_partition
from fedgroups.engine.runs import LocalMapResult, Run, map_units
from fedgroups.format.finish import PartitionResult
from fedgroups.format.spec import new_build_id, with_build_id
from fedgroups.keys.base import KeyFunction
from fedgroups.sources.base import Source


@dataclass
class _Shared:
    source: Source
    keyfn: KeyFunction
    plan: BuildPlan
    runs_root: str
    on_missing_key: str
    counter: Any


_STATE: _Shared | None = None
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end with the build process. A build killed with ``kill -9``
    would otherwise leave its workers running, writing into its staging folder after the
    next build's recovery removed it (and making the folder again)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def _map_task(task: int, units: list[int]) -> LocalMapResult:
    s = _STATE
    assert s is not None
    started = time.perf_counter()
    try:
        result = map_units(units, s.source, s.keyfn, runs_root=s.runs_root, name=f"t{task:05d}",
                           num_partitions=s.plan.num_partitions, spill_bytes=s.plan.spill_bytes,
                           on_missing_key=s.on_missing_key, progress=s.counter)
        result.started = started
        return result
    finally:
        pa.default_memory_pool().release_unused()  # give freed buffers back to the OS


def _reduce_task(partition: int, runs: list[Run], root: str, schema: pa.Schema,
                 text_column: str | None, shard_bytes: int,
                 group_columns: tuple[str, ...]) -> tuple[PartitionResult, ReduceTimes]:
    s = _STATE
    assert s is not None
    times = ReduceTimes()
    try:
        return reduce_partition(partition, runs, root=root, schema=schema,
                                text_column=text_column, shard_bytes=shard_bytes,
                                sort_in_memory_bytes=s.plan.sort_in_memory_bytes,
                                scratch=s.runs_root, group_columns=group_columns,
                                times=times), times
    finally:
        pa.default_memory_pool().release_unused()


def _tasks(num_units: int, workers: int) -> list[list[int]]:
    """Group units into about 4 tasks per worker, keeping each task's units consecutive."""
    n = min(num_units, 4 * workers) or 1
    return [list(range(num_units))[i::n] for i in range(n)] if num_units else [[]]


def _run_all(pool: ProcessPoolExecutor | None, fn: Any, calls: list[tuple], bar: Progress,
             advance: Any = None) -> list[Any]:
    """Run calls in the pool (or inline), updating the bar; the first error cancels the rest."""
    if pool is None:
        out = []
        for args in calls:
            out.append(fn(*args))
            bar.update(advance(out[-1]) if advance else None)
        return out
    futures: list[Future] = [pool.submit(fn, *args) for args in calls]
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
        for f in done:
            if f.exception() is not None:
                for p in pending:
                    p.cancel()
                raise f.exception()  # type: ignore[misc]
            if advance:
                bar.update(advance(f.result()))
        if not advance:
            bar.update(None)
    return [f.result() for f in futures]


def run_local(
    source: Source, keyfn: KeyFunction, *, staging: str, plan: BuildPlan, text_column: str | None,
    on_missing_key: str, progress: bool, shard_bytes: int, group_columns: tuple[str, ...] = (),
    timer: PhaseTimer | None = None,
) -> tuple[list[PartitionResult], pa.Schema, dict[str, Any]]:
    """Build into ``staging``; return partition results, output schema and statistics
    (and mark the phases on ``timer``)."""
    global _STATE
    timer = timer or PhaseTimer()
    runs_root = os.path.join(staging, "_runs")
    os.makedirs(runs_root)
    counter = mp.get_context("fork").Value("q", 0)
    _STATE = _Shared(source, keyfn, plan, runs_root, on_missing_key, counter)
    stats: dict[str, Any] = {}
    parallel_map = source.parallel and plan.workers > 1 and source.num_units > 1
    pool = ProcessPoolExecutor(plan.workers, mp_context=mp.get_context("fork"),
                               initializer=_die_with_parent, initargs=(os.getpid(),)) \
        if plan.workers > 1 else None
    try:
        t0 = time.perf_counter()
        with Progress("grouping", total=source.estimated_rows, unit="ex", enabled=progress,
                      counter=counter) as bar:
            map_pool = pool if parallel_map else None
            tasks = _tasks(source.num_units, plan.workers if parallel_map else 1)
            results: list[LocalMapResult] = _run_all(map_pool, _map_task,
                                                list(enumerate(tasks)), bar)
        stats["map_seconds"] = time.perf_counter() - t0
        if map_pool is not None and results:  # forked workers start on the first submit
            timer.mark("worker start", at=min(r.started for r in results))
        timer.mark("map and spill")
        rows_in = sum(r.rows_in for r in results)
        dropped = sum(r.dropped for r in results)
        check_map_totals(rows_in, dropped, keyfn.spec, str(source.description))
        key_type = key_type_of((r.key_type or "" for r in results), keyfn.spec)
        # every shard records the build it belongs to
        schema = with_build_id(output_schema(source.schema, key_type), new_build_id())
        by_partition: dict[int, list[Run]] = {}
        for r in results:
            for run in r.runs:
                by_partition.setdefault(run.partition, []).append(run)
        # Largest partitions first: the slowest finish is then not at the end.
        order = sorted(by_partition, key=lambda p: -sum(r.num_bytes for r in by_partition[p]))
        t1 = time.perf_counter()
        with Progress("writing", total=len(order), unit="part", enabled=progress) as bar:
            reduced = _run_all(pool, _reduce_task,
                               [(p, by_partition[p], staging, schema, text_column, shard_bytes,
                                 group_columns) for p in order],
                               bar, advance=lambda _: 1)
        stats["reduce_seconds"] = time.perf_counter() - t1
        parts = [part for part, _ in reduced]
        timer.split(("sort and merge", "write shards"),
                    (sum(t.sort for _, t in reduced), sum(t.write for _, t in reduced)))
        stats.update(rows_in=rows_in, dropped=dropped,
                     drop_examples=[w for r in results for w in r.drop_examples][:5])
        return parts, schema, stats
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        _STATE = None
        shutil.rmtree(runs_root, ignore_errors=True)
        timer.mark("worker stop")
