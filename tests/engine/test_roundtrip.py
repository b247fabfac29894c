"""Round trip: every example that goes in comes out exactly once, in its group, in order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.compute as pc
from hypothesis import given
from hypothesis import strategies as st

import fedgroups as fg
from fedgroups.format.verify import verify
from tests.engine.helpers import (
    canonical,
    dataset_multiset,
    layout,
    planned,
    shard_key_counts,
)

# Keys that are ordinary data even though they look like paths, CSV or markup.
AWKWARD_KEYS = st.one_of(
    st.sampled_from(["a,b", "line\nbreak", "a/b/c", "..", "../../etc", "é", "日本語", "",
                     " ", "\t", "NULL", "x" * 10_000]),
    st.text(min_size=0, max_size=12),
)


@given(
    keys=st.lists(AWKWARD_KEYS, min_size=1, max_size=8, unique=True),
    n=st.integers(1, 120),
    num_partitions=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    tiny_budget=st.booleans(),
)
def test_multiset_in_equals_multiset_out(tmp_path_factory, keys, n, num_partitions, seed,
                                         tiny_budget):
    rng = np.random.default_rng(seed)
    rows = [{"user": keys[int(rng.integers(len(keys)))], "i": i,
             "text": " ".join(["w"] * int(rng.integers(0, 5)))} for i in range(n)]
    out = str(tmp_path_factory.mktemp("rt") / "ds")
    overrides = {"sort_in_memory_bytes": 256, "spill_bytes": 512} if tiny_budget else {}
    with planned(**overrides):
        report = fg.build(rows, "field:user", out, workers=1, num_partitions=num_partitions,
                          shard_size=2048 if tiny_budget else "512MB")
    expected = Counter((r["user"], canonical(r)) for r in rows)
    assert dataset_multiset(out) == expected
    assert shard_key_counts(out) == Counter(r["user"] for r in rows)
    totals = report.manifest["totals"]
    assert totals["examples"] == n
    assert totals["groups"] == len({r["user"] for r in rows})
    assert totals["words"] == sum(len(r["text"].split()) for r in rows)
    assert verify(out) == []
    # within a group, rows keep their source order
    ds = fg.open(out)
    for k in ds.keys():
        idx = [ex["i"] for ex in ds.group(k)]
        assert idx == sorted(idx)


def test_parallel_build_is_identical_to_serial(tmp_path):
    rows = [{"user": f"u{i % 37}", "text": f"example {i}"} for i in range(5000)]
    a = fg.build(rows, "field:user", tmp_path / "a", workers=1, num_partitions=3)
    b = fg.build(rows, "field:user", tmp_path / "b", workers=2, num_partitions=3)
    assert layout(a.path) == layout(b.path)


def test_parallel_file_build_over_many_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    for f in range(6):
        t = pa.table({"url": [f"https://Host{(f * 100 + i) % 13}.org:8080/p?{i}"
                              for i in range(400)], "n": list(range(f * 400, f * 400 + 400))})
        paths.append(str(tmp_path / f"part-{f}.parquet"))
        pq.write_table(t, paths[-1])
    with planned(spill_bytes=4096):
        report = fg.build(str(tmp_path / "*.parquet"), "url-host:url", tmp_path / "out",
                          workers=2)
    ds = fg.open(tmp_path / "out")
    assert len(ds) == 13 and ds.num_examples == 2400
    assert all(k.startswith("host") and ":" not in k for k in ds.keys())  # lower-cased, no port
    got = sorted(ex["n"] for k in ds.keys() for ex in ds.group(k))
    assert got == list(range(2400))
    assert report.manifest["source"]["num_files"] == 6


def test_group_larger_than_shard_is_split_into_parts_not_truncated(tmp_path):
    rows = [{"user": "big", "text": "word " * 40 + str(i)} for i in range(3000)]
    rows += [{"user": "small", "text": "x"}]
    with planned(sort_in_memory_bytes=20_000, spill_bytes=16_000):
        report = fg.build(rows, "field:user", tmp_path / "o", workers=1, shard_size="32KB")
    ds = fg.open(tmp_path / "o")
    big = ds.group("big")
    assert len(big.parts) > 3
    assert [int(e["text"].split()[-1]) for e in big] == list(range(3000))
    assert report.manifest["totals"]["parts"] == len(big.parts) + 1
    assert verify(str(tmp_path / "o")) == []


def test_int_and_bytes_keys(tmp_path):
    rows = [{"k": i % 5, "b": bytes([i % 3]), "v": i} for i in range(50)]
    fg.build(rows, "field:k", tmp_path / "i")
    ds = fg.open(tmp_path / "i")
    assert ds.keys() == [0, 1, 2, 3, 4] and ds.manifest["key"]["type"] == "int64"
    assert ds.group(3).num_examples == 10
    fg.build(rows, "field:b", tmp_path / "b")
    assert fg.open(tmp_path / "b").keys() == [b"\x00", b"\x01", b"\x02"]


def test_callable_and_batched_keys(tmp_path):
    rows = [{"email": f"user{i}@{['a.org', 'b.com'][i % 2]}"} for i in range(20)]
    fg.build(rows, lambda ex: ex["email"].split("@")[1], tmp_path / "c", workers=2)
    assert fg.open(tmp_path / "c").keys() == ["a.org", "b.com"]

    @fg.batched
    def domain(batch):
        return pc.utf8_replace_slice(batch.column("email"), 0, 0, "")  # whole address

    fg.build(rows, domain, tmp_path / "v")
    assert len(fg.open(tmp_path / "v")) == 20


def test_seeded_keys_are_deterministic(tmp_path):
    rows = [{"text": str(i)} for i in range(1000)]
    a = fg.build(rows, "iid:10:7", tmp_path / "a")
    b = fg.build(rows, "iid:10:7", tmp_path / "b")
    c = fg.build(rows, "iid:10:8", tmp_path / "c")
    assert layout(a.path) == layout(b.path)
    assert layout(a.path)[-1] != layout(c.path)[-1]
    sizes = fg.open(tmp_path / "a").group_sizes()
    assert len(sizes) == 10 and sizes.min() > 60  # roughly uniform
    h = fg.build(rows, "hash:4:text", tmp_path / "h")
    assert h.manifest["totals"]["groups"] == 4


def test_drop_policy_counts_what_it_drops(tmp_path):
    rows = [{"user": None if i % 4 == 0 else f"u{i % 3}", "i": i} for i in range(40)]
    report = fg.build(rows, "field:user", tmp_path / "d", on_missing_key="drop")
    assert report.manifest["totals"]["dropped_examples"] == 10
    assert report.manifest["totals"]["examples"] == 30
    assert report.stats["drop_examples"]  # where, for the summary
