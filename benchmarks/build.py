"""Build throughput: fedgroups vs a plain pyarrow read-and-rewrite of the same files.

    python benchmarks/build.py --examples 1000000 [--engine local|beam] [--memory-limit 2GB]
    nice python benchmarks/build.py --examples 20000000 --json scale-20m.json --dir /work/x &

Generates C4-like Parquet files (url, text of ~200 words, timestamp; Zipf hosts), builds
them grouped by ``url-host:url`` and prints examples/s, peak resident memory (all processes)
and the ratio of the build time to the I/O floor measured in the same run.

Above 1M examples it also builds a 1M-example dataset in the same run (``--baseline``) and
compares the wall times; ``--stream`` then reads every group of each dataset once (peak RSS,
examples/s); ``--json PATH`` writes every figure as soon as it is known (so a long run that
is stopped still leaves what it measured), with the load average beside each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(__file__))
from _common import PeakMemory, dir_bytes, make_c4_like

from fedgroups.engine.plan import parse_bytes

# bytes on disk a build needs beyond its input, per input byte (Parquet in): spill runs are
# uncompressed Arrow (~2.2x the snappy input), the output about 1x; runs are deleted as the
# reduce goes, so this is an upper bound
DISK_PER_INPUT_BYTE = 3.5
INPUT_BYTES_PER_EXAMPLE = 520  # this generator's Parquet, measured


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


def _load() -> float:
    return round(os.getloadavg()[0], 1)


_BUILD = """
import json, sys, time
import fedgroups as fg
paths, out, engine, workers, limit, verbose = json.loads(sys.argv[1])
t = time.perf_counter()
report = fg.build(paths, "url-host:url", out, engine=engine, workers=workers,
                  memory_limit=limit, overwrite=True, progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "totals": report.manifest["totals"],
                  "stats": {k: v for k, v in report.stats.items()
                            if isinstance(v, (int, float, str, dict))}}))
"""

_STREAM = """
import json, sys, time
import fedgroups as fg
t = time.perf_counter()
ds = fg.open(sys.argv[1])
rows = groups = 0
for g in ds.groups(seed=0):
    groups += 1
    for b in g.batches(1 << 16):
        rows += b.num_rows
print(json.dumps({"seconds": time.perf_counter() - t, "examples": rows, "groups": groups}))
"""


class DiskPeak:
    """Peak bytes under a folder, sampled in a thread every ``interval`` seconds."""

    def __init__(self, path: str, interval: float = 2.0) -> None:
        self.path, self.interval, self.peak = path, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, dir_bytes(self.path))
            self._stop.wait(self.interval)

    def __enter__(self) -> DiskPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, dir_bytes(self.path))


def _subprocess(code: str, *args: str) -> tuple[dict[str, Any], float, int]:
    """Run a Python snippet in a fresh process; its last stdout line (JSON), the CPU
    seconds of it and its children, and the peak resident memory of its process tree."""
    cpu = _children_cpu()
    with PeakMemory(pid_command=[sys.executable, "-c", code, *args]) as mem:
        pass
    cpu = _children_cpu() - cpu
    if mem.returncode != 0:
        raise SystemExit(f"subprocess failed:\n{mem.stderr}")
    if mem.stderr.strip():
        print(mem.stderr, file=sys.stderr, end="")
    return json.loads(mem.stdout.strip().splitlines()[-1]), cpu, mem.peak_rss


def timed_build(paths: list[str], folder: str, engine: str, workers: int | None,
                limit: str) -> dict[str, Any]:
    """Build into ``folder``/out in a fresh process (so the input generator's memory is not
    counted): wall and CPU seconds, peak RSS of the process tree, peak disk under folder."""
    out = os.path.join(folder, "out")
    with DiskPeak(folder) as disk:
        result, cpu, peak = _subprocess(
            _BUILD, json.dumps([paths, out, engine, workers, limit, False]))
    return {"seconds": result["seconds"], "cpu_seconds": cpu, "peak_rss": peak,
            "peak_disk_bytes": disk.peak, "output_bytes": dir_bytes(out),
            "totals": result["totals"], "stats": result["stats"], "path": out}


def stream_all(path: str) -> dict[str, Any]:
    result, cpu, peak = _subprocess(_STREAM, path)
    return {**result, "cpu_seconds": cpu, "peak_rss": peak,
            "examples_per_second": result["examples"] / result["seconds"]}


class Figures:
    """The run's figures, written to a JSON file (if any) each time one is added."""

    def __init__(self, path: str | None, **header: Any) -> None:
        self.path, self.data = path, {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime()), **header}
        self.save()

    def add(self, name: str, value: Any) -> None:
        self.data[name] = value
        self.save()

    def save(self) -> None:
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=2, default=str)
            os.replace(tmp, self.path)


def measure(n: int, label: str, args: argparse.Namespace, scratch: str, figs: Figures) -> dict:
    """Generate n examples, time the rewrite floor and the build(s), optionally stream."""
    t = time.perf_counter()
    paths = make_c4_like(os.path.join(scratch, f"input-{label}"), n,
                         num_files=max(args.files, n // 2_500_000))
    size = sum(os.path.getsize(p) for p in paths)
    row: dict[str, Any] = {"examples": n, "files": len(paths), "input_bytes": size,
                           "generate_seconds": time.perf_counter() - t}
    print(f"[{label}] input: {n:,} examples in {len(paths)} files, {size / 2**20:,.0f} MiB "
          f"(generated in {row['generate_seconds']:.1f} s)", flush=True)
    free = shutil.disk_usage(scratch).free
    need = int(size * DISK_PER_INPUT_BYTE)
    row["disk_free_before_build"] = free
    if free < need:
        raise SystemExit(f"[{label}] {free / 2**30:.1f} GiB free in {scratch}, a build of "
                         f"{size / 2**30:.1f} GiB of input may need {need / 2**30:.1f} GiB")
    if not args.no_rewrite:
        row["load_before_rewrite"] = _load()
        floor, floor_cpu = plain_rewrite(paths, os.path.join(scratch, "rewrite"))
        shutil.rmtree(os.path.join(scratch, "rewrite"))
        row["rewrite"] = {"seconds": floor, "cpu_seconds": floor_cpu}
        print(f"[{label}] plain pyarrow read+rewrite: {floor:.2f} s wall, {floor_cpu:.2f} s "
              f"CPU ({n / floor:,.0f} examples/s), load {row['load_before_rewrite']}",
              flush=True)
        figs.add(label, row)
    engines = [args.engine] + (["local"] if args.compare_local and args.engine != "local"
                               else [])
    limit = parse_bytes(args.memory_limit)
    for engine in engines:
        folder = os.path.join(scratch, f"build-{label}-{engine}")
        load = _load()
        b = timed_build(paths, folder, engine, args.workers, args.memory_limit)
        b["load_before"], b["load_after"] = load, _load()
        row[f"build_{engine}"] = b
        print(f"[{label}] fedgroups build ({engine}): {b['seconds']:.2f} s wall, "
              f"{b['cpu_seconds']:.2f} s CPU, {n / b['seconds']:,.0f} examples/s, "
              f"{b['totals']['groups']:,} groups, peak RSS {b['peak_rss'] / 2**20:,.0f} MiB "
              f"(limit {limit / 2**20:,.0f} MiB, {'under' if b['peak_rss'] <= limit else 'OVER'})"
              f", peak disk {b['peak_disk_bytes'] / 2**30:.2f} GiB (+ input "
              f"{size / 2**30:.2f} GiB), load {load} -> {b['load_after']}", flush=True)
        if "rewrite" in row:
            b["ratio_wall"] = b["seconds"] / row["rewrite"]["seconds"]
            b["ratio_cpu"] = b["cpu_seconds"] / row["rewrite"]["cpu_seconds"]
            print(f"  ratio build / plain rewrite: {b['ratio_wall']:.2f}x wall, "
                  f"{b['ratio_cpu']:.2f}x CPU", flush=True)
        figs.add(label, row)
        if args.stream:
            load = _load()
            s = stream_all(b["path"])
            s["load_before"], s["load_after"] = load, _load()
            row[f"stream_{engine}"] = s
            print(f"[{label}] stream every group once: {s['seconds']:.1f} s, "
                  f"{s['examples_per_second']:,.0f} examples/s, {s['groups']:,} groups, "
                  f"peak RSS {s['peak_rss'] / 2**20:,.0f} MiB, load {load}", flush=True)
            figs.add(label, row)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(os.path.join(scratch, f"input-{label}"), ignore_errors=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8,
                    help="input files (at least one per 2.5M examples)")
    ap.add_argument("--engine", choices=["local", "beam"], default="local")
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--compare-local", action="store_true",
                    help="with --engine beam: also build with the local engine")
    ap.add_argument("--baseline", type=int, default=None, metavar="N",
                    help="also measure N examples first and compare (default: 1M when "
                    "--examples is above 1M; 0 for none)")
    ap.add_argument("--stream", action="store_true",
                    help="read every group of each built dataset once (peak RSS, examples/s)")
    ap.add_argument("--no-rewrite", action="store_true", help="skip the pyarrow rewrite floor")
    ap.add_argument("--keep", action="store_true", help="keep inputs and outputs in --dir")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the figures here")
    args = ap.parse_args()
    baseline = args.baseline if args.baseline is not None else (
        1_000_000 if args.examples > 1_000_000 else 0)
    scratch = args.dir or tempfile.mkdtemp(prefix="fg-bench-build-")
    os.makedirs(scratch, exist_ok=True)
    want = args.examples * INPUT_BYTES_PER_EXAMPLE * (1 + DISK_PER_INPUT_BYTE)
    free = shutil.disk_usage(scratch).free
    print(f"disk: {free / 2**30:.1f} GiB free in {scratch}; about {want / 2**30:.1f} GiB "
          f"needed (input + spill + output); load {_load()} on {os.cpu_count()} cores",
          flush=True)
    figs = Figures(args.json, examples=args.examples, baseline_examples=baseline,
                   memory_limit=args.memory_limit, engine=args.engine, cores=os.cpu_count(),
                   disk_free_at_start=free, disk_estimate=want, load_at_start=_load())
    try:
        rows = {}
        if baseline:
            rows["baseline"] = measure(baseline, "baseline", args, scratch, figs)
        rows["main"] = measure(args.examples, "main", args, scratch, figs)
        if baseline:
            key = f"build_{args.engine}"
            b, m = rows["baseline"][key], rows["main"][key]
            scale = {"examples_ratio": args.examples / baseline,
                     "wall_ratio": m["seconds"] / b["seconds"],
                     "cpu_ratio": m["cpu_seconds"] / b["cpu_seconds"]}
            if args.stream:
                sb, sm = rows["baseline"][f"stream_{args.engine}"], rows["main"][
                    f"stream_{args.engine}"]
                scale["stream_throughput_ratio"] = (sm["examples_per_second"]
                                                    / sb["examples_per_second"])
                scale["stream_peak_rss_ratio"] = sm["peak_rss"] / sb["peak_rss"]
            figs.add("scaling", scale)
            print(f"scaling {baseline:,} -> {args.examples:,} examples "
                  f"({scale['examples_ratio']:.0f}x): build wall {scale['wall_ratio']:.1f}x, "
                  f"CPU {scale['cpu_ratio']:.1f}x", flush=True)
        figs.add("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
