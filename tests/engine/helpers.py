"""Helpers for build tests: read a dataset back as a multiset of (key, example)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

import fedgroups as fg


def canonical(example: dict[str, Any]) -> str:
    return json.dumps(example, sort_keys=True, default=repr)


def dataset_multiset(path: str) -> Counter:
    """(key, example) pairs read through the fedgroups reader."""
    ds = fg.open(path)
    out: Counter = Counter()
    for key in ds.keys():
        for ex in ds.group(key):
            out[(key, canonical(ex))] += 1
    return out


def shard_key_counts(path: str) -> Counter:
    """Rows per key counted straight from the shard files with pyarrow (not our reader)."""
    ds = fg.open(path)
    counts: Counter = Counter()
    for shard in ds.manifest["shards"]:
        keys = pq.read_table(f"{path}/{shard['path']}", columns=["__group__"]).column(0)
        counts.update(keys.to_pylist())
    return counts


@contextlib.contextmanager
def planned(**overrides: int) -> Iterator[None]:
    """Builds inside use the plan with these fields replaced (tiny budgets reach the
    out-of-core paths on tiny inputs)."""
    import fedgroups.engine.api as api

    make_plan = api.make_plan

    def patched(**kw: Any) -> Any:
        return dataclasses.replace(make_plan(**kw), **overrides)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "make_plan", patched)
        yield


def layout(path: str) -> list[tuple[str, list[int], Any]]:
    """Each shard's path, row-group sizes and rows, and the index: all a build decides
    (file bytes differ between builds only by the build id each file carries)."""
    from fedgroups.format.spec import INDEX_FILE
    ds = fg.open(path)
    out = []
    for shard in ds.manifest["shards"]:
        f = pq.ParquetFile(f"{path}/{shard['path']}")
        groups = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
        out.append((shard["path"], groups, f.read().replace_schema_metadata(None)))
    out.append((INDEX_FILE, [], pq.read_table(f"{path}/{INDEX_FILE}").replace_schema_metadata(None)))
    return out
