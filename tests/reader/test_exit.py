"""A stream left mid-iteration leaves no read-ahead work on Arrow's threads: closed,
dropped, or still referenced when the interpreter exits. (Work still running there while
the interpreter finalizes aborted the process now and then: "terminate called without an
active exception", exit 134.)"""

from __future__ import annotations

import gc
import itertools
import subprocess
import sys
import textwrap

import pytest

import fedgroups as fg
import fedgroups.reader.readahead as readahead


@pytest.fixture(scope="module")
def several_row_groups(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("exit") / "ds")
    rows = ({"user": f"u{i % 800:04d}", "text": f"w{i % 13} " * (20 + i % 50)}
            for i in range(40_000))
    fg.build(rows, "field:user", out, workers=1, num_partitions=3, progress=False)
    return out


class _Recorded(readahead._Scan):
    made: list[readahead._Scan] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _Recorded.made.append(self)


def _left_running(scans: list[readahead._Scan]) -> int:
    """Scans whose Arrow iterator still had batches to give (work not run to its end)."""
    return sum(next(s._batches, None) is not None for s in scans)


@pytest.mark.parametrize("how", ["close", "drop", "break"])
def test_a_stream_left_mid_iteration_ends_its_scans(several_row_groups, monkeypatch, how):
    monkeypatch.setattr(readahead, "_Scan", _Recorded)
    _Recorded.made = []
    ds = fg.open(several_row_groups)
    if how == "break":
        for n, g in enumerate(ds.groups(seed=1, buffer_size=64)):
            list(g)
            if n == 2:
                break
    else:
        it = ds.groups(seed=1, buffer_size=64)
        for g in itertools.islice(it, 3):
            list(g)
        if how == "close":
            it.close()
        del it, g
    gc.collect()
    assert _Recorded.made, "the stream read ahead with no scan: the test reads too little"
    assert _left_running(_Recorded.made) == 0


EXIT_CHECK = textwrap.dedent("""
    import atexit, sys
    made = []

    @atexit.register  # registered before fedgroups is imported: runs after its own hook
    def report():
        running = sum(next(s._batches, None) is not None for s in made)
        print(f"scans {len(made)} running {running}", flush=True)

    import fedgroups.reader.readahead as readahead

    class Recorded(readahead._Scan):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
    readahead._Scan = Recorded

    import fedgroups as fg
    it = fg.open(sys.argv[1]).groups(seed=3, buffer_size=64)  # alive until exit
    for _ in range(3):
        print(next(it).key, flush=True)
""")


def test_a_stream_still_referenced_at_exit_has_ended_its_scans(several_row_groups):
    r = subprocess.run([sys.executable, "-c", EXIT_CHECK, several_row_groups],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("scans ") and not last.startswith("scans 0 "), r.stdout
    assert last.endswith(" running 0"), r.stdout
