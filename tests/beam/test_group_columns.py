"""Group columns on the Beam engine: the same index columns as the local engine."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from beam_helpers import DIRECT, assert_same_dataset, skewed_table

import fedgroups as fg
from fedgroups.errors import GroupColumnError
from fedgroups.format.spec import INDEX_FILE
from fedgroups.format.verify import verify


def _with_group_columns(rows: int, seed: int) -> pa.Table:
    """The skewed table plus columns that depend on the user only (team, region)."""
    t = skewed_table(rows, seed)
    users = t.column("user").to_pylist()
    return t.append_column("team", pa.array([f"team{int(u[4:]) % 5}" for u in users])) \
            .append_column("region", pa.array([int(u[4:]) % 3 for u in users], pa.int64()))


def _index(path) -> pa.Table:
    return pq.read_table(f"{path}/{INDEX_FILE}").sort_by([("key", "ascending"),
                                                            ("part", "ascending")])


def test_local_and_beam_write_the_same_group_columns(tmp_path):
    table = _with_group_columns(3000, seed=2)
    cols = ("team", "region")
    local = fg.build(table, "field:user", tmp_path / "local", progress=False, workers=2,
                     num_partitions=2, shard_size="24KB", group_columns=cols)
    beam_ = fg.build(table, "field:user", tmp_path / "beam", engine="beam", num_partitions=3,
                     progress=False, group_columns=cols, pipeline_options=[
                         *DIRECT, "--fedgroups_sort_budget=16KB", "--fedgroups_shard_bytes=24KB"])
    assert_same_dataset(local.path, beam_.path)
    assert beam_.manifest["group_columns"] == local.manifest["group_columns"] == list(cols)
    a, b = fg.open(local.path), fg.open(beam_.path)
    assert a.group_table().equals(b.group_table())
    for path in (local.path, beam_.path):
        index = _index(path)
        assert max(index.column("part").to_pylist()) >= 1  # a group larger than a shard
        for row in index.to_pylist():
            n = int(row["key"][4:])
            assert (row["group_column.team"], row["group_column.region"]) == (
                f"team{n % 5}", n % 3)
        assert verify(path) == []


def test_beam_reports_a_column_that_varies_within_a_group(tmp_path):
    table = _with_group_columns(500, seed=3)
    with pytest.raises(GroupColumnError, match=r"group 'user\d+': column 'score'"):
        fg.build(table, "field:user", tmp_path / "beam", engine="beam", num_partitions=2,
                 progress=False, group_columns=["score"], pipeline_options=DIRECT)


def test_write_grouped_records_group_columns(tmp_path):
    rows = _with_group_columns(200, seed=4).to_pylist()
    out = str(tmp_path / "wg")
    with beam.Pipeline(argv=DIRECT) as p:
        _ = p | beam.Create(rows) | fg.beam.WriteGrouped(
            out, key="field:user", num_shards=2, group_columns="team")
    ds = fg.open(out)
    assert ds.group_columns == ("team",)
    assert ds.group_table().column("team").to_pylist() == [
        f"team{int(k[4:]) % 5}" for k in ds.keys()]
