"""Build throughput: fedgroups vs a plain pyarrow read-and-rewrite of the same files.

    python benchmarks/build.py --examples 1000000 [--engine local|beam] [--memory-limit 2GB]

Generates C4-like Parquet files (url, text of ~200 words, timestamp; Zipf hosts), builds
them grouped by ``url-host:url`` and prints examples/s, peak resident memory (all processes)
and the ratio of the build time to the I/O floor measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(__file__))
from _common import PeakMemory, make_c4_like

from fedgroups.engine.plan import parse_bytes


def plain_rewrite(paths: list[str], out_dir: str) -> tuple[float, float]:
    """The I/O floor: read every file with pyarrow and write it back out as Parquet.
    Returns (wall seconds, CPU seconds of all threads)."""
    os.makedirs(out_dir, exist_ok=True)
    t, c = time.perf_counter(), time.process_time()
    for p in paths:
        pq.write_table(pq.read_table(p), os.path.join(out_dir, os.path.basename(p)))
    return time.perf_counter() - t, time.process_time() - c


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


_BUILD = """
import json, sys, time
import fedgroups as fg
paths, out, engine, workers, limit = json.loads(sys.argv[1])
t = time.perf_counter()
report = fg.build(paths, "url-host:url", out, engine=engine, workers=workers,
                  memory_limit=limit, overwrite=True, progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "totals": report.manifest["totals"]}))
"""


def timed_build(paths: list[str], out: str, engine: str, workers: int | None,
                limit: str) -> tuple[float, float, int, dict]:
    """Build in a fresh process (so the input generator's memory is not counted); return
    wall seconds, CPU seconds of the process and its workers, peak resident memory of the
    process tree, and the totals."""
    cmd = [sys.executable, "-c", _BUILD, json.dumps([paths, out, engine, workers, limit])]
    cpu = _children_cpu()
    with PeakMemory(pid_command=cmd) as mem:
        pass
    cpu = _children_cpu() - cpu
    if mem.returncode != 0:
        raise SystemExit(f"build failed:\n{mem.stderr}")
    result = json.loads(mem.stdout.strip().splitlines()[-1])
    return result["seconds"], cpu, mem.peak_rss, result["totals"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--engine", choices=["local", "beam"], default="local")
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--compare-local", action="store_true",
                    help="with --engine beam: also build with the local engine")
    args = ap.parse_args()
    scratch = args.dir or tempfile.mkdtemp(prefix="fg-bench-build-")
    try:
        t = time.perf_counter()
        paths = make_c4_like(os.path.join(scratch, "input"), args.examples, num_files=args.files)
        size = sum(os.path.getsize(p) for p in paths)
        print(f"input: {args.examples:,} examples in {len(paths)} files, {size / 2**20:,.0f} MiB "
              f"(generated in {time.perf_counter() - t:.1f} s)")
        floor, floor_cpu = plain_rewrite(paths, os.path.join(scratch, "rewrite"))
        shutil.rmtree(os.path.join(scratch, "rewrite"))
        results = []
        engines = [args.engine] + (["local"] if args.compare_local and args.engine != "local"
                                   else [])
        for engine in engines:
            out = os.path.join(scratch, f"grouped-{engine}")
            seconds, cpu, peak, totals = timed_build(paths, out, engine, args.workers,
                                                     args.memory_limit)
            results.append((engine, seconds, cpu, peak, totals))
            shutil.rmtree(out)
        limit = parse_bytes(args.memory_limit)
        print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"plain pyarrow read+rewrite: {floor:.2f} s wall, {floor_cpu:.2f} s CPU "
              f"({args.examples / floor:,.0f} examples/s)")
        for engine, seconds, cpu, peak, totals in results:
            print(f"fedgroups build ({engine}): {seconds:.2f} s wall, {cpu:.2f} s CPU, "
                  f"{args.examples / seconds:,.0f} examples/s, {totals['groups']:,} groups, "
                  f"peak RSS {peak / 2**20:,.0f} MiB (limit {limit / 2**20:,.0f} MiB, "
                  f"{'under' if peak <= limit else 'OVER'})")
            print(f"  ratio build / plain rewrite: {seconds / floor:.2f}x wall, "
                  f"{cpu / floor_cpu:.2f}x CPU")
        if len(results) == 2:
            print(f"  ratio {results[0][0]} / {results[1][0]} time: "
                  f"{results[0][1] / results[1][1]:.2f}x "
                  f"(throughput {results[1][1] / results[0][1]:.2f}x)")
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
