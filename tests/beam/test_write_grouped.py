"""fedgroups.beam.WriteGrouped inside a user's own pipeline, on the DirectRunner."""

from __future__ import annotations

import os
import subprocess
import sys

import apache_beam as beam
import fsspec
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from beam_helpers import DIRECT, assert_same_dataset, no_dataset_left, skewed_table

import fedgroups as fg
import fedgroups.beam as fgb
from fedgroups.errors import KeyFunctionError


def _run(rows, out, **kw):
    with beam.Pipeline(options=PipelineOptions(DIRECT)) as p:
        manifests = p | beam.Create(rows, reshuffle=False) | fgb.WriteGrouped(out, **kw)
        assert_that(manifests | beam.Map(lambda m: m["totals"]["examples"]),
                         equal_to([len(rows)]))


def test_same_groups_as_local_and_deterministic_order(tmp_path):
    rows = skewed_table(3000, seed=7).to_pylist()
    local = fg.build(rows, "field:user", tmp_path / "local", progress=False)
    _run(rows, str(tmp_path / "a"), key="field:user", num_shards=4)
    # the same rows in another order, in small bundles: groups and their order are unchanged
    _run(rows[::-1], str(tmp_path / "b"), key="field:user", num_shards=4,
         sort_budget="32KB", shard_bytes="64KB")
    assert_same_dataset(local.path, str(tmp_path / "a"), ordered=False)
    assert_same_dataset(str(tmp_path / "a"), str(tmp_path / "b"))
    assert fg.open(tmp_path / "a").manifest["build"]["transform"] == "WriteGrouped"


def test_failure_leaves_nothing_that_opens(tmp_path):
    rows = [{"user": "a" if i % 50 else None, "text": "x"} for i in range(500)]
    out = str(tmp_path / "out")
    with pytest.raises(KeyFunctionError):
        _run(rows, out, key="field:user", num_shards=2)
    assert not os.path.exists(out)
    with pytest.raises(fg.FedGroupsError):
        fg.open(out)


def test_remote_output_is_written_in_place_with_the_manifest_last(tmp_path):
    """A URL output (fsspec's in-process memory filesystem stands in for gs://)."""
    rows = skewed_table(800, seed=8).to_pylist()
    out = "memory://fedgroups-test/out"
    _run(rows, out, key="field:user", num_shards=3)
    fs = fsspec.filesystem("memory")
    local = tmp_path / "copy"
    fs.get("/fedgroups-test/out", str(local), recursive=True)
    ds = fg.open(local)
    assert ds.num_examples == 800
    assert sorted(os.listdir(local / ".fedgroups")) == ["README.md", "index.pq", "manifest.json"]
    assert all(f.endswith(".parquet") for f in os.listdir(local) if f != ".fedgroups")
    fs.rm("/fedgroups-test", recursive=True)


# A job whose pipeline fails upstream of WriteGrouped, in a process of its own that then
# exits (as a failed job does): its staging folder is left behind, owned by a dead process.
_FAILING_JOB = """
import sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
sys.path.insert(0, sys.argv[2])
from beam_helpers import DIRECT, skewed_table
import fedgroups.beam as fgb

def boom(row):
    if row["n"] == 10:
        raise RuntimeError("upstream failure")
    return row

with beam.Pipeline(options=PipelineOptions(DIRECT)) as p:
    _ = (p | beam.Create(skewed_table(200, seed=9).to_pylist()) | beam.Map(boom)
         | fgb.WriteGrouped(sys.argv[1], key="field:user", num_shards=2))
"""


def test_no_dataset_left_when_a_pipeline_fails_before_commit(tmp_path):
    out = str(tmp_path / "out")
    job = subprocess.run([sys.executable, "-c", _FAILING_JOB, out, os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=600)
    assert job.returncode != 0 and "upstream failure" in job.stderr
    assert not os.path.exists(out)
    assert [e for e in os.listdir(tmp_path) if "staging" in e]  # what the job left
    # the staging directory left beside OUT is not a dataset and the next build removes it
    fg.build(skewed_table(200, seed=9), "field:user", out, progress=False)
    assert no_dataset_left(str(tmp_path / "nothing"))
    assert [e for e in os.listdir(tmp_path) if "staging" in e] == []
