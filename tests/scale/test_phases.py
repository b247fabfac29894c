"""The build's phase timer (``fedgroups build --verbose``) and the command's fast exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.cli import main
from fedgroups.engine.phases import PhaseTimer, format_phases, process_age

PHASES = ("open source", "plan", "map and spill", "sort and merge", "write shards",
          "worker stop", "finish (index, manifest)", "publish")


@pytest.fixture
def source(tmp_path: object) -> str:
    """Two Parquet files of 30 rows (a glob): two units, so two workers both map."""
    for f in range(2):
        pq.write_table(pa.table({"user": [f"u{i % 5}" for i in range(30)],
                                 "text": [f"w{i} x" for i in range(30)]}),
                       os.path.join(str(tmp_path), f"in-{f}.parquet"))
    return os.path.join(str(tmp_path), "in-*.parquet")


def test_phase_timer_marks_and_splits() -> None:
    t = PhaseTimer(start=0.0)
    t.mark("a", at=1.5)
    t.mark("b", at=1.0)  # a mark in the past closes an empty phase, never a negative one
    t.mark("c", at=4.0)
    assert t.as_dict() == {"a": 1.5, "b": 0.0, "c": 2.5}
    t.split(("sort", "write"), (1.0, 3.0))
    d = t.as_dict()
    assert d["write"] == pytest.approx(3 * d["sort"], rel=1e-6)
    table = format_phases({"x": 1.0, "y": 3.0})
    assert "75.0%" in table and table.splitlines()[-1].split() == ["total", "4.000"]


def test_process_age_counts_from_process_start() -> None:
    age = process_age()
    if age is None:
        pytest.skip("no /proc here")
    # this process has run the whole test session so far: more than nothing, less than a day
    assert 0.0 < age < 86_400


@pytest.mark.parametrize("workers", [1, 2])
def test_build_reports_every_phase(source: str, tmp_path: object, workers: int) -> None:
    report = fg.build(source, "field:user", os.path.join(str(tmp_path), "out"),
                      progress=False, workers=workers)
    phases = report.stats["phases"]
    assert [p for p in phases if p != "worker start"] == list(PHASES)
    assert ("worker start" in phases) == (workers > 1)  # with one worker, nothing is forked
    assert all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= report.seconds + 1.0


def test_cli_verbose_prints_the_table(source: str, tmp_path: object,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", source, os.path.join(str(tmp_path), "out"), "--key", "field:user",
                 "--quiet", "--verbose"]) == 0
    out = capsys.readouterr().out
    for name in ("start-up and imports", *PHASES, "total"):
        assert name in out


def test_command_output_survives_the_fast_exit(source: str, tmp_path: object) -> None:
    """The build command ends with os._exit: what it printed into a pipe must all arrive."""
    out = os.path.join(str(tmp_path), "out")
    done = subprocess.run([sys.executable, "-m", "fedgroups.cli", "build", source, out,
                           "--key", "field:user", "--verbose"],
                          capture_output=True, text=True, check=True)
    assert "build finished" in done.stdout and done.stdout.rstrip().splitlines()[-1].startswith(
        "total")
    assert fg.open(out).num_examples == 60
