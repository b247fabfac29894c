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
