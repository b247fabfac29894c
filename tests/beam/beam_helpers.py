"""Helpers for the Beam engine tests: small skewed inputs, dataset comparisons."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

import fedgroups as fg

# One worker, in memory: the most reliable DirectRunner mode, and the fastest to start.
DIRECT = ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def skewed_table(rows: int, seed: int, users: int = 40) -> pa.Table:
    """Examples whose user follows a Zipf law: one user holds a large share of the rows."""
    rng = np.random.default_rng(seed)
    user = (rng.zipf(1.6, rows) - 1) % users
    words = rng.integers(1, 12, rows)
    text = [" ".join(f"w{(i * 7 + j) % 97}" for j in range(int(n))) for i, n in enumerate(words)]
    return pa.table({
        "user": pa.array([f"user{u:03d}" for u in user]),
        "text": pa.array(text),
        "n": pa.array(np.arange(rows, dtype=np.int64)),
        "score": pa.array(rng.random(rows)),
    })


def groups_of(path: str) -> dict[Any, list[dict[str, Any]]]:
    ds = fg.open(path)
    return {k: list(ds.group(k)) for k in ds.keys()}


def assert_same_dataset(a: str, b: str, *, ordered: bool = True) -> None:
    """Same groups, same examples (in the same order when both keep source order),
    and the same per-group statistics in the index."""
    ga, gb = groups_of(a), groups_of(b)
    assert list(ga) == list(gb)
    for k in ga:
        if ordered:
            assert ga[k] == gb[k], k
        else:
            assert sorted(map(repr, ga[k])) == sorted(map(repr, gb[k])), k
    ia, ib = (fg.open(p).index for p in (a, b))
    stats = ["num_rows", "num_bytes", "num_words"]
    sa = ia.group_by("key").aggregate([(c, "sum") for c in stats]).sort_by("key")
    sb = ib.group_by("key").aggregate([(c, "sum") for c in stats]).sort_by("key")
    assert sa.equals(sb)
    ta, tb = (fg.open(p).manifest["totals"] for p in (a, b))
    for k in ("groups", "examples", "bytes", "words", "dropped_examples"):
        assert ta[k] == tb[k], k


def no_dataset_left(out: str) -> bool:
    parent, name = os.path.split(out)
    return not os.path.exists(out) and not any(
        e.startswith(f".{name}") for e in os.listdir(parent))
