"""A build runs the reader's checks on its index before it publishes: an engine bug that
would publish a dataset the reader refuses stops the build instead, with nothing at OUT."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

import fedgroups as fg
import fedgroups.format.writer as writer
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.checks import index_problems, tiling_problems

ROWS = [{"user": f"u{g:02d}", "text": f"t{g} {i}"} for g in range(12) for i in range(g % 3 + 1)]


def _off_by_one(keys: pa.Array) -> np.ndarray:
    """The group cut with every start after the first one row late."""
    starts = run_starts(keys).copy()
    starts[1:] = np.minimum(starts[1:] + 1, len(keys) - 1)
    return np.unique(starts)


run_starts = writer.run_starts


def _leftovers(tmp_path) -> list[str]:
    return [e for e in os.listdir(tmp_path) if e != "out"]


def test_a_build_whose_group_cut_is_off_by_one_publishes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "run_starts", _off_by_one)
    out = str(tmp_path / "out")
    with pytest.raises(CorruptDatasetError,
                       match=r"index\.pq: the index this build wrote is inconsistent \(.*group "
                             r"keys are not strictly sorted.*nothing at the output changed"):
        fg.build(ROWS, "field:user", out, workers=1, num_partitions=1, progress=False)
    assert not os.path.lexists(out)
    assert _leftovers(tmp_path) == []


def test_an_overwrite_whose_cut_is_off_keeps_the_old_dataset(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    fg.build(ROWS, "field:user", out, workers=1, progress=False)
    before = fg.open(out).manifest["build_id"]
    monkeypatch.setattr(writer, "run_starts", _off_by_one)
    with pytest.raises(CorruptDatasetError, match="inconsistent"):
        fg.build(ROWS, "field:user", out, workers=1, num_partitions=1, overwrite=True,
                 progress=False)
    assert fg.open(out).manifest["build_id"] == before
    assert _leftovers(tmp_path) == []


def test_the_checks_name_each_kind_of_fault():
    keys = pa.array(["a", "b", "c"])
    part, rows, shard, first = (np.array(v, np.int64) for v in
                                ([0, 0, 0], [2, 1, 3], [0, 0, 0], [0, 2, 3]))
    ok = dict(part=part, rows=rows, shard=shard, first=first, group_keys=keys,
              shard_rows=[6], totals={"groups": 3, "examples": 6})
    assert index_problems(**ok) == []
    assert tiling_problems(rows=rows, shard=shard, first=first, shard_rows=[6]) == []
    assert "not strictly sorted" in index_problems(
        **{**ok, "group_keys": pa.array(["a", "c", "c"])})[0]
    assert "run past the end" in index_problems(**{**ok, "shard_rows": [5]})[0]
    assert "7 examples" not in " ".join(index_problems(**ok))
    assert "6 examples but the manifest says 7" in index_problems(
        **{**ok, "totals": {"groups": 3, "examples": 7}})[0]
    gap = tiling_problems(rows=rows, shard=shard, first=np.array([0, 3, 4]), shard_rows=[7])
    assert "starts at row 3 where row 2 was expected" in gap[0]
    short = tiling_problems(rows=rows, shard=shard, first=first, shard_rows=[7])
    assert "cover 6 rows, the shard has 7" in short[0]
