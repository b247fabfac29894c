"""A reader that opened a dataset before ``build --overwrite`` replaced it never mixes the
two builds: it reads the build it opened, or raises naming the swapped file."""

from __future__ import annotations

import json
import os

import pytest

import fedgroups as fg
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.layout import manifest_path

from .helpers import rows

OLD, NEW = "ooo", "nnn"  # tags whose builds have shards of equal sizes


def _build(out: str, tag: str) -> dict:
    return fg.build(rows(tag, 400), "field:user", out, overwrite=True, workers=1,
                    num_partitions=2, shard_size="4KB", progress=False).manifest


def _sizes(out: str) -> list[int]:
    with open(manifest_path(out)) as f:
        return [s["file_bytes"] for s in json.load(f)["shards"]]


@pytest.mark.parametrize("how", ["random-access", "stream"])
def test_a_swapped_shard_of_equal_size_is_an_error_never_data(tmp_path, how):
    out = str(tmp_path / "out")
    old = _build(out, OLD)
    ds = fg.open(out)
    new = _build(out, NEW)
    assert _sizes(out) == [s["file_bytes"] for s in old["shards"]]  # sizes alone cannot tell
    assert new["build_id"] != old["build_id"]
    with pytest.raises(CorruptDatasetError, match=r"shard-\d{5}-\d{4}\.parquet.*another build"):
        if how == "random-access":
            for k in ds.keys():
                assert all(ex["text"].startswith(OLD) for ex in ds.group(k))
        else:
            for g in ds.groups(seed=0):
                assert all(ex["text"].startswith(OLD) for ex in g)


def test_a_shard_opened_before_the_swap_keeps_its_build(tmp_path):
    out = str(tmp_path / "out")
    _build(out, OLD)
    ds = fg.open(out)
    first = ds.keys()[0]
    before = [ex["text"] for ex in ds.group(first)]  # opens that group's shard(s)
    ds.store.clear_cache()
    _build(out, NEW)
    assert [ex["text"] for ex in ds.group(first)] == before  # the file it opened, not OUT's
    assert next(iter(fg.open(out).group(first)))["text"].startswith(NEW)


def test_a_swapped_index_is_named(tmp_path):
    out = str(tmp_path / "out")
    _build(out, OLD)
    with open(manifest_path(out)) as f:
        manifest = json.load(f)
    _build(str(tmp_path / "other"), NEW)
    index = os.path.join(out, manifest["index"]["path"])
    os.replace(os.path.join(tmp_path, "other", manifest["index"]["path"]), index)
    with pytest.raises(CorruptDatasetError, match="index"):
        fg.open(out)
