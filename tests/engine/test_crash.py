"""Crash safety: an interrupted build never leaves a dataset; the next build succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import fedgroups as fg
from fedgroups.errors import NotADatasetError

SLOW_BUILD = textwrap.dedent("""
    import sys, time
    import fedgroups as fg

    def slow_key(ex):
        time.sleep(0.002)
        return ex["u"]

    rows = ({"u": f"u{i % 5}", "i": i} for i in range(100_000))
    print("started", flush=True)
    fg.build(rows, slow_key, sys.argv[1], workers=1, progress=False)
    print("finished", flush=True)
""")


def _start(out: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, out], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.0)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_build_leaves_no_dataset_and_can_rerun(tmp_path, sig):
    out = str(tmp_path / "out")
    proc = _start(out)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    with pytest.raises(NotADatasetError):
        fg.open(out)
    staging = [e for e in os.listdir(tmp_path) if "staging" in e]
    if sig == signal.SIGINT:
        assert staging == []  # cleaned up on the way out
    rows = [{"u": f"u{i % 5}", "i": i} for i in range(100)]
    fg.build(rows, "field:u", out)  # the same output path works again
    assert len(fg.open(out)) == 5
    assert [e for e in os.listdir(tmp_path) if "staging" in e] == []  # stale staging removed


SLOW_PARALLEL_BUILD = textwrap.dedent("""
    import sys, time
    import fedgroups as fg

    def slow_key(ex):
        time.sleep(0.002)
        return ex["u"]

    fg.build(sys.argv[2:], slow_key, sys.argv[1], workers=2, progress=False)
""")


def test_the_workers_of_a_killed_build_end_with_it(tmp_path):
    """kill -9 of a build with worker processes: the workers end too, so none goes on
    writing into the staging folder that the next build's recovery removes."""
    import json

    import psutil

    from fedgroups.format.publish import recover
    files = []
    for f in range(4):
        path = tmp_path / f"part{f}.jsonl"
        path.write_text("".join(json.dumps({"u": f"u{i % 5}", "i": i}) + "\n"
                                for i in range(3000)))
        files.append(str(path))
    out = str(tmp_path / "out")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PARALLEL_BUILD, out, *files])
    workers: list[psutil.Process] = []
    deadline = time.time() + 60
    while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
        workers = psutil.Process(proc.pid).children()
        time.sleep(0.05)
    assert len(workers) == 2, "the build did not start its workers"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    for p in alive:
        p.kill()  # clean up before failing
    assert alive == [], "workers of a killed build are still running"
    recover(out)
    time.sleep(1.0)  # a surviving worker would make the staging folder again by now
    assert [e for e in os.listdir(tmp_path) if "staging" in e] == []
