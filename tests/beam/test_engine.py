"""fg.build(engine="beam") on the DirectRunner against the local engine on the same input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from beam_helpers import DIRECT, assert_same_dataset, no_dataset_left, skewed_table

import fedgroups as fg
from fedgroups.errors import KeyFunctionError, SourceError


def _both(source, key, tmp_path, *, shards=6, beam_options=(), **kw):
    local = fg.build(source, key, tmp_path / "local", progress=False, workers=2,
                     num_partitions=3, **kw)
    beam = fg.build(source, key, tmp_path / "beam", engine="beam", num_partitions=shards,
                    pipeline_options=[*DIRECT, *beam_options], progress=False, **kw)
    return local, beam


def test_files_skewed_key_same_as_local(parquet_files, tmp_path):
    local, beam = _both(parquet_files, "field:user", tmp_path)
    assert_same_dataset(local.path, beam.path)
    m = beam.manifest
    assert m["build"]["engine"] == "beam" and m["build"]["num_partitions"] == 6
    assert m["totals"]["examples"] == 6000
    # one pass of the data through the shuffle, nothing spilled with the default budget
    assert beam.stats["rows_written"] == 6000 and beam.stats["spilled_runs"] == 0
    assert len(m["shards"]) > 1
    assert fg.open(beam.path).manifest["totals"]["largest_group_examples"] > 1000


def test_seeded_key_uses_the_same_ordinals(parquet_files, tmp_path):
    # iid keys hash the example's (unit, row): both engines must see the same positions
    local, beam = _both(parquet_files, "iid:7:3", tmp_path, shards=3)
    assert_same_dataset(local.path, beam.path)


def test_tiny_budget_splits_a_large_group_into_parts(parquet_files, tmp_path):
    """A group far larger than the reduce worker's budget: sorted runs spill and merge,
    the group is written in parts across shard files, and nothing is lost or reordered."""
    local, beam = _both(parquet_files, "field:user", tmp_path, shards=2, beam_options=[
        "--fedgroups_sort_budget=16KB", "--fedgroups_shard_bytes=24KB"])
    assert beam.stats["spilled_runs"] > 4
    index = fg.open(beam.path).index
    assert max(index.column("part").to_pylist()) >= 2  # some group has three parts or more
    assert_same_dataset(local.path, beam.path)
    big = fg.open(beam.path).group("user000")
    ns = [r["n"] for r in big]
    assert ns == sorted(ns) and len(big.parts) > 1  # source order across parts


def test_huggingface_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    table = skewed_table(3000, seed=2)
    ds = datasets.Dataset(table)
    local, beam = _both(ds, "field:user", tmp_path, shards=4)
    assert_same_dataset(local.path, beam.path)


def test_iterable_source_is_read_on_the_driver(tmp_path):
    rows = skewed_table(2000, seed=3).to_pylist()
    local = fg.build(iter(rows), "field:user", tmp_path / "local", progress=False)
    beam = fg.build(iter(rows), "field:user", tmp_path / "beam", engine="beam",
                    num_partitions=3, pipeline_options=DIRECT, progress=False)
    assert_same_dataset(local.path, beam.path)


def test_callable_key_and_dropped_examples(tmp_path):
    table = skewed_table(1500, seed=4)

    def key(example):  # every third user has no group
        return None if example["n"] % 3 == 0 else example["user"][-1]

    local, beam = _both(table, key, tmp_path, shards=3, on_missing_key="drop")
    assert beam.manifest["totals"]["dropped_examples"] == 500
    assert_same_dataset(local.path, beam.path)


def test_missing_key_error_leaves_no_output(tmp_path):
    table = pa.table({"user": ["a", None, "b"] * 20, "text": ["x y"] * 60})
    out = tmp_path / "out"
    with pytest.raises(KeyFunctionError, match="row 1"):
        fg.build(table, "field:user", out, engine="beam", num_partitions=2,
                 pipeline_options=DIRECT, progress=False)
    assert no_dataset_left(str(out))


def test_all_keys_missing_is_an_error(tmp_path):
    table = pa.table({"user": pa.array([None] * 10, pa.string()), "text": ["x"] * 10})
    with pytest.raises(KeyFunctionError, match="every one of the 10"):
        fg.build(table, "field:user", tmp_path / "out", engine="beam", on_missing_key="drop",
                 pipeline_options=DIRECT, progress=False)
    assert no_dataset_left(str(tmp_path / "out"))


def test_failing_key_function_on_a_worker_leaves_nothing(tmp_path):
    def key(example):
        if example["n"] == 1234:
            raise ValueError("bad example")
        return example["user"]

    out = tmp_path / "out"
    with pytest.raises(KeyFunctionError, match="bad example"):
        fg.build(skewed_table(2000, seed=5), key, out, engine="beam",
                 pipeline_options=DIRECT, progress=False)
    assert no_dataset_left(str(out))


def test_int_keys(tmp_path):
    table = pa.table({"g": np.arange(500) % 7, "text": ["a b c"] * 500})
    local, beam = _both(table, "field:g", tmp_path, shards=2)
    assert fg.open(beam.path).keys() == list(range(7))
    assert_same_dataset(local.path, beam.path)


def test_empty_input_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "empty.jsonl"
    path.write_text("")
    with pytest.raises(SourceError):
        fg.build(str(path), "field:user", tmp_path / "out", engine="beam",
                 pipeline_options=DIRECT, progress=False)


def test_build_engine_beam_writes_a_remote_out_directly(tmp_path):
    """fg.build(engine="beam") to a URL (fsspec's memory filesystem stands in for gs://):
    the same dataset as a local build, manifest written last by the pipeline itself."""
    import fsspec


    table = skewed_table(600, seed=21)
    out = "memory://fedgroups-engine/out"
    report = fg.build(table, "field:user", out, engine="beam", pipeline_options=DIRECT,
                      progress=False)
    assert report.manifest["totals"]["examples"] == 600
    assert report.manifest["source"]["kind"] == "arrow-table"
    fs = fsspec.filesystem("memory")
    fs.get("/fedgroups-engine/out", str(tmp_path / "copy"), recursive=True)
    fg.build(table, "field:user", tmp_path / "local", progress=False)
    beam_ds, local_ds = fg.open(tmp_path / "copy"), fg.open(tmp_path / "local")
    assert beam_ds.keys() == local_ds.keys()
    for k in local_ds.keys():
        assert list(beam_ds.group(k)) == list(local_ds.group(k))  # same rows, source order
    with pytest.raises(fg.FedGroupsError, match="already holds"):
        fg.build(table, "field:user", out, engine="beam", pipeline_options=DIRECT)
    fs.rm("/fedgroups-engine", recursive=True)
    with pytest.raises(fg.FedGroupsError, match="local engine writes to a local directory"):
        fg.build(table, "field:user", "memory://x/y")
