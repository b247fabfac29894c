"""Where a small and a mid-size build's time goes, before and after a change, paired.

    git archive BASE src | tar -x -C /tmp/before     # the code to compare against
    python benchmarks/phases.py --before /tmp/before/src --examples 100 100000 --repeat 3

Runs ``fedgroups build --verbose`` (as a user would: a fresh process) with this checkout's
code and with the code under ``--before``, alternating, ``--repeat`` times, plus a plain
pyarrow read+rewrite of the same input and ``fedgroups --help``, and prints the process wall
time of each (median and range), the ratio after/before of each pair, and the phase table
of the median run (the ``--before`` code may have none: then only its totals). The load
average is printed beside each round: on a loaded machine only the paired ratios count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import make_c4_like

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
_REWRITE = """
import sys, time
t = time.perf_counter()
import pyarrow.parquet as pq
for p in sys.argv[2:]:
    pq.write_table(pq.read_table(p), p + "." + sys.argv[1])
"""


def _run(src: str, args: list[str]) -> tuple[float, str]:
    """Process wall seconds and stdout of ``python args`` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": src, "FEDGROUPS_PROGRESS": "0"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode not in (0,):
        raise SystemExit(f"{args} failed:\n{out.stderr}")
    return wall, out.stdout


def parse_phases(stdout: str) -> dict[str, float]:
    phases = {}
    lines = stdout.splitlines()
    if not any(line.startswith("phase ") for line in lines):
        return phases
    start = next(i for i, line in enumerate(lines) if line.startswith("phase "))
    for line in lines[start + 1:]:
        m = re.match(r"(.+?)\s+([0-9.]+)(?:\s+[0-9.]+%)?$", line)
        if m:
            phases[m.group(1).strip()] = float(m.group(2))
    return phases


def _fmt(values: list[float]) -> str:
    return (f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"
            if values else "-")


def measure(n: int, before: str, repeat: int, scratch: str) -> dict:
    paths = make_c4_like(os.path.join(scratch, f"in-{n}"), n, num_files=1 if n < 10_000 else 8)
    out = os.path.join(scratch, f"out-{n}")
    build = ["-m", "fedgroups.cli", "build", *paths, out, "--key", "url-host:url",
             "--overwrite", "--quiet", "--verbose"]
    rows: dict[str, list] = {"before": [], "after": [], "rewrite": [], "load": [],
                             "after_phases": [], "before_phases": []}
    for r in range(repeat):
        rows["load"].append(round(os.getloadavg()[0], 1))
        order = [("before", before), ("after", HERE)]
        if r % 2:
            order.reverse()  # neither always runs first
        for name, src in order:
            argv = build if name == "after" else [a for a in build if a != "--verbose"]
            wall, stdout = _run(src, argv)
            rows[name].append(wall)
            phases = parse_phases(stdout)
            total = phases.pop("total", None)
            if total is not None:
                phases["exit (process wall - table total)"] = max(0.0, wall - total)
            m = re.search(r"^time\s+([0-9.]+) s", stdout, re.M)
            if m and not phases:
                phases = {"build() as reported": float(m.group(1)),
                          "start-up, imports, report, exit": wall - float(m.group(1))}
            rows[f"{name}_phases"].append(phases)
        wall, _ = _run(HERE, ["-c", _REWRITE, str(r), *paths])
        rows["rewrite"].append(wall)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a src/ folder of the code to compare")
    ap.add_argument("--examples", type=int, nargs="+", default=[100, 100_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="fg-bench-phases-")
    report: dict = {"help": {}}
    for name, src in (("before", args.before), ("after", HERE)):
        report["help"][name] = [_run(src, ["-m", "fedgroups.cli", "--help"])[0]
                                for _ in range(args.repeat)]
    print(f"fedgroups --help: before {_fmt(report['help']['before'])}, after "
          f"{_fmt(report['help']['after'])}, load {os.getloadavg()[0]:.1f}", flush=True)
    for n in args.examples:
        rows = measure(n, args.before, args.repeat, scratch)
        report[str(n)] = rows
        ratios = [a / b for a, b in zip(rows["after"], rows["before"])]
        print(f"\n{n:,} examples, loads {rows['load']}: process wall before "
              f"{_fmt(rows['before'])}, after {_fmt(rows['after'])}, after/before per pair "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; plain rewrite "
              f"{_fmt(rows['rewrite'])}; build/rewrite after "
              f"{', '.join(f'{a / w:.2f}' for a, w in zip(rows['after'], rows['rewrite']))}, "
              f"before {', '.join(f'{b / w:.2f}' for b, w in zip(rows['before'], rows['rewrite']))}",
              flush=True)
        for name in ("before", "after"):
            i = rows[name].index(statistics.median_low(rows[name]))
            print(f"  {name} (median run, {rows[name][i]:.3f} s):")
            for phase, sec in rows[f"{name}_phases"][i].items():
                print(f"    {phase:<36} {sec:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
