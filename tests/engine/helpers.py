"""Helpers for build tests: read a dataset back as a multiset of (key, example)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

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
