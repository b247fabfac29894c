"""The chunked read path of streams gives exactly what the per-group path gives."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedgroups as fg
from fedgroups.errors import CorruptDatasetError
from fedgroups.reader import chunks, readahead, stream
from fedgroups.reader import shards as shards_mod
from fedgroups.reader.readahead import RowGroupFeed
from fedgroups.reader.stream import chunk_ranges


def _per_group(ds: fg.GroupedDataset, key, columns=None) -> pa.Table:
    """The group read by random access (the per-group path), fresh handles and cache."""
    return fg.open(ds.root)[key].to_arrow(columns)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), buffer_size=st.sampled_from([1, 7, 64, 10_000]),
       block_bytes=st.sampled_from([512, 2048, 1 << 20]), prefetch=st.sampled_from([0, 64]),
       columns=st.sampled_from([None, ["i"], ["text", "x"]]))
def test_streamed_groups_equal_random_access(small, seed, buffer_size, block_bytes,
                                             prefetch, columns):
    fresh = fg.open(small.root)
    expect = {k: fresh[k].to_arrow(columns) for k in fresh.keys()}
    it = small.groups(seed=seed, buffer_size=buffer_size, block_bytes=block_bytes,
                      prefetch=prefetch, columns=columns)
    seen = []
    for g in it:
        seen.append(g.key)
        got = pa.Table.from_batches(list(g.batches(1 << 20, columns)))
        assert got.equals(expect[g.key]), g.key
        assert g.num_examples == len(expect[g.key]) and g.parts == fresh[g.key].parts
    assert seen == it.keys() and sorted(seen) == small.keys()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), prefetch=st.sampled_from([0, 64]))
def test_streamed_dicts_equal_random_access(small, seed, prefetch):
    fresh = fg.open(small.root)
    total = 0
    for g in small.groups(seed=seed, prefetch=prefetch, buffer_size=32):
        rows = list(g)
        assert rows == list(fresh[g.key]), g.key
        total += len(rows)
    assert total == small.num_examples


def test_dicts_are_handed_out_once_and_never_shared(small):
    it = small.groups(seed=0)
    a, b = next(it), next(it)
    first = list(a)
    again = list(a)  # converted again from Arrow: equal, not the same objects
    assert first == again and all(x is not y for x, y in zip(first, again))
    assert list(b) == list(fg.open(small.root)[b.key])
    first[0]["i"] = -1  # mutating what we were given changes nothing we hand out later
    assert list(a)[0]["i"] == 0


def test_dicts_made_ahead_while_the_consumer_takes_them(small):
    # a consumer that takes every group's dicts gets them made with the group; one that
    # stops (Arrow only) or iterates a group twice still gets the right, unshared rows
    fresh = fg.open(small.root)
    ready, seen = 0, 0
    for i, g in enumerate(small.groups(seed=2)):
        ready += bool(g._ready)
        want = list(fresh[g.key])
        mode = (i // 7) % 3
        if mode == 0:
            assert list(g) == want, g.key
        elif mode == 1:
            assert g.to_arrow().equals(fresh[g.key].to_arrow()), g.key
        else:
            first, again = list(g), list(g)
            assert first == again == want and all(x is not y for x, y in zip(first, again))
        seen += 1
    assert seen == len(small) and 0 < ready < seen


def test_streamed_group_methods_match(small):
    fresh = fg.open(small.root)
    for g in small.groups(seed=1):
        ref = fresh[g.key]
        assert [b.num_rows for b in g.batches(3)] == [b.num_rows for b in ref.batches(3)]
        assert g.to_arrow(["i"]).equals(ref.to_arrow(["i"]))
        split = g.split_examples({"a": 0.5, "b": 0.5}, seed=3)
        ref_split = ref.split_examples({"a": 0.5, "b": 0.5}, seed=3)
        assert [r["i"] for r in split["b"]] == [r["i"] for r in ref_split["b"]]
        assert list(g) == list(ref)


def _chunk(ds, ids, preload, threads):
    feed = RowGroupFeed(ds.store, ds.schema.names, read_ahead=threads)
    return chunks.plan_chunk(ds.store, ids, ds.schema.names, preload, feed)


@pytest.mark.parametrize("preload", [1 << 20, 200])
def test_threads_change_nothing(small, preload):
    # decoded on threads (tables resolved by the consumer) or at once, in this thread
    ids = np.random.default_rng(0).permutation(len(small))
    now = list(_chunk(small, ids, preload, 0))
    small.store.clear_cache()
    ahead = list(_chunk(small, ids, preload, 2))
    assert [g.key for g in now] == [g.key for g in ahead] == small.store.keys(ids)
    for a, b in zip(now, ahead):
        assert a.to_arrow().equals(b.to_arrow()) and list(a) == list(b)


def test_dicts_of_a_group_kept_after_its_stream_closed(small):
    it = small.groups(seed=4, prefetch=64)
    kept = [next(it) for _ in range(5)]
    it.close()  # queued decodes are cancelled; groups already handed out still read
    fresh = fg.open(small.root)
    for g in kept:
        assert list(g) == list(fresh[g.key])


def test_tiny_read_ahead_limits_change_nothing(small, monkeypatch):
    expect = [(g.key, g.to_arrow()) for g in small.groups(seed=5, buffer_size=50)]
    monkeypatch.setattr(readahead, "READ_AHEAD_BYTES", 1)  # one scan of one row group
    monkeypatch.setattr(readahead, "SEGMENT_BYTES", 1)
    monkeypatch.setattr(stream, "PLAN_AHEAD_BYTES", 1)
    monkeypatch.setattr(stream, "CHUNK_GROUPS", 7)
    small.store.clear_cache()
    got = [(g.key, g.to_arrow()) for g in small.groups(seed=5, buffer_size=50)]
    assert [k for k, _ in got] == [k for k, _ in expect]
    assert all(a.equals(b) for (_, a), (_, b) in zip(got, expect))


def test_read_ahead_holds_only_what_planned_chunks_need(small):
    feed = RowGroupFeed(small.store, small.schema.names, read_ahead=2)
    ids = np.random.default_rng(1).permutation(len(small))
    spans = [ids[i:i + 40] for i in range(0, len(ids), 40)]
    planned = [chunks.plan_chunk(small.store, part, small.schema.names, 1 << 20, feed)
               for part in spans]
    assert feed.held_bytes > 0
    for part, c in zip(spans, planned):
        got = [(g.key, g.to_arrow().num_rows) for g in c]
        assert got == list(zip(small.store.keys(part), small.store.arrays.sizes[part].tolist()))
        feed.release(c.codes, c.code_rows)
    assert feed.held_bytes == 0 and not feed._held
    feed.close()


def test_streamed_batches_select_columns(small):
    fresh = fg.open(small.root)
    for g in small.groups(seed=2, columns=["i"]):
        assert [b.schema.names for b in g.batches(1 << 10, ["i"])] == [["i"]]
        assert pa.Table.from_batches(list(g.batches(1 << 10, ["i"]))).equals(
            fresh[g.key].to_arrow(["i"]))
    for g in small.groups(seed=2):  # streamed with every column, asked for one
        got = pa.Table.from_batches(list(g.batches(1 << 10, ["i"])))
        assert got.equals(fresh[g.key].to_arrow(["i"]))


def test_big_and_split_groups_take_the_per_group_path(parted_path):
    ds = fg.open(parted_path)
    fresh = fg.open(parted_path)
    for g in ds.groups(seed=0, buffer_size=4):
        assert g.to_arrow().equals(fresh[g.key].to_arrow())
        assert sum(1 for _ in g) == g.num_examples
    # a group over the preload limit stays lazy, read row group by row group
    small_limit = _chunk(ds, np.arange(len(ds)), 1 << 10, 0)
    big = [g for g in small_limit if g.key == "big"][0]
    assert big._preloaded is None and big._rg is None
    assert sum(b.num_rows for b in big.batches(500)) == 3000


def test_stream_detects_an_index_that_disagrees_with_the_shard(small_path, tmp_path,
                                                             shift_index_row):
    root = str(tmp_path / "ds")
    shutil.copytree(small_path, root)
    shift_index_row(root)
    ds = fg.open(root)
    with pytest.raises(CorruptDatasetError, match=r"shard-.*should hold exactly"):
        for g in ds.groups(seed=0):
            list(g.batches(100))


def test_stream_checks_row_groups_random_access_cached_unchecked(small_path, tmp_path,
                                                                shift_index_row):
    """Random access checks only its group's run, so the row groups it caches are not
    checked whole: a stream that finds them in the cache still checks each one once."""
    root = str(tmp_path / "ds")
    shutil.copytree(small_path, root)
    shift_index_row(root)
    ds = fg.open(root)
    for key in ds.keys():  # every row group into the cache (but the shifted group's)
        try:
            ds[key].to_arrow()
        except CorruptDatasetError:
            pass
    with pytest.raises(CorruptDatasetError, match=r"shard-.*should hold exactly"):
        for g in ds.groups(seed=0):
            list(g.batches(100))


def test_small_chunks_change_nothing(small, monkeypatch):
    expect = [(g.key, g.to_arrow()) for g in small.groups(seed=2)]
    monkeypatch.setattr(stream, "CHUNK_GROUPS", 3)
    monkeypatch.setattr(chunks.GatheredDicts, "UNIT_ROWS", 5)
    got = [(g.key, g.to_arrow()) for g in small.groups(seed=2, prefetch=4)]
    assert [k for k, _ in got] == [k for k, _ in expect]
    assert all(a.equals(b) for (_, a), (_, b) in zip(got, expect))
    assert all(list(g) == list(small[g.key]) for g in small.groups(seed=2))


def test_groups_kept_past_their_chunk_let_go_of_its_dicts(small, monkeypatch):
    # a kept group holds its chunk; once the stream is past the chunk, the chunk no
    # longer holds the dicts of whole row groups, and the group's rows convert afresh
    monkeypatch.setattr(stream, "CHUNK_GROUPS", 4)
    monkeypatch.setattr(stream, "FIRST_CHUNK_GROUPS", 4)
    kept, seen = [], 0
    for i, g in enumerate(small.groups(seed=5)):
        if i % 5 == 0:
            kept.append(g)
        else:
            assert list(g) == list(small[g.key])  # the stream runs in dict mode
        seen += 1
    assert seen == len(small) and len(kept) > 3
    assert all(c is None for c in kept[0]._chunk._whole)
    for g in kept:
        assert list(g) == list(fg.open(small.root)[g.key]), g.key


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5000), max_size=200), st.integers(1, 20),
       st.integers(1, 20_000), st.integers(1, 4000))
def test_chunk_ranges_tile_and_respect_limits(sizes, max_groups, max_bytes, preload):
    nb = np.asarray(sizes, dtype=np.int64)
    ranges = list(chunk_ranges(nb, max_groups, max_bytes, preload))
    bounds = [0] + [hi for _, hi in ranges]
    assert [lo for lo, _ in ranges] == bounds[:-1] and bounds[-1] == len(sizes)
    for lo, hi in ranges:
        assert 1 <= hi - lo <= max_groups
        held = np.where(nb[lo:hi] > preload, 1, np.maximum(nb[lo:hi], 1)).sum()
        assert hi - lo == 1 or held <= max_bytes


@pytest.mark.parametrize("dict_bytes", [0, 1 << 30])
def test_dicts_whole_row_groups_or_gathered_are_the_same(small, monkeypatch, dict_bytes):
    # row groups converted to dicts whole (the feed) or rows gathered (GatheredDicts)
    monkeypatch.setattr(readahead, "DICT_BYTES", dict_bytes)
    fresh = fg.open(small.root)
    seen = 0
    it = small.groups(seed=7)
    for g in it:
        first = list(g)
        assert first == list(fresh[g.key]), g.key
        again = list(g)  # converted again, never the same dict objects
        assert again == first and all(a is not b for a, b in zip(first, again))
        seen += len(first)
    assert seen == small.num_examples


def test_whole_row_group_dicts_stay_within_their_budget(small, monkeypatch):
    monkeypatch.setattr(readahead, "DICT_BYTES", 1)  # nothing fits: all gathered
    feed = RowGroupFeed(small.store, small.schema.names, read_ahead=2)
    ids = np.arange(len(small))
    chunk = chunks.plan_chunk(small.store, ids, small.schema.names, 1 << 20, feed)
    groups = list(chunk)
    assert all(list(g) == list(small[g.key]) for g in groups)
    assert feed._dict_bytes == 0
    monkeypatch.setattr(readahead, "DICT_BYTES", 1 << 30)
    chunk2 = chunks.plan_chunk(small.store, ids, small.schema.names, 1 << 20, feed)
    assert all(list(g) == list(small[g.key]) for g in chunk2)
    assert feed._dict_bytes > 0  # a chunk of every group needs all of each row group
    feed.release(chunk.codes, chunk.code_rows)
    feed.release(chunk2.codes, chunk2.code_rows)
    assert feed._dict_bytes == 0 and feed.held_bytes == 0
    feed.close()


def test_a_stream_continues_in_a_forked_child(tmp_path):
    # Arrow's threads do not survive fork: a child that went on pulling the scans started
    # in the parent would wait forever; it queues their work again instead
    import json
    import os
    import signal
    import time

    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])
    text = [" ".join(words[rng.integers(0, 5, 150)]) for _ in range(30_000)]
    table = pa.table({"user": [f"u{i % 3000:04d}" for i in range(30_000)], "text": text})
    ds = fg.build(table, "field:user", tmp_path / "ds", progress=False, workers=1)
    ds = fg.open(ds.path)
    it = ds.groups(seed=9)
    head = [next(it).key]  # decoding is under way in Arrow's threads (tens of row groups)
    out = tmp_path / "child.json"
    pid = os.fork()
    if pid == 0:  # the child: the rest of the stream, with each group's row count
        try:
            out.write_text(json.dumps([[g.key, g.to_arrow().num_rows] for g in it]))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child hangs on the parent's scans")
        time.sleep(0.05)
    rest = json.loads(out.read_text())
    assert head + [k for k, _ in rest] == ds.groups(seed=9).keys()
    assert [n for _, n in rest] == [ds[k].num_examples for k, _ in rest]


def test_small_groups_of_every_shard_come_from_their_row_groups(small):
    """A chunk over groups of several shards locates each small one-part group in its row
    group (the per-group path would give the same rows, only slower: this is what catches
    a shard left out when locating)."""
    a = small.store.arrays
    ids = np.random.default_rng(3).permutation(len(small))
    one_part = ids[a.stops[ids] - a.starts[ids] == 1]
    p = a.starts[one_part]
    inside = [len(list(small.store.shards.get(int(s)).row_group_slices(int(f), int(n)))) == 1
              for s, f, n in zip(a.part_shard[p], a.part_first[p], a.part_rows[p])]
    one_part = one_part[np.asarray(inside)]  # in one row group each
    assert len(np.unique(a.part_shard[a.starts[one_part]])) > 1  # several shards
    feed = RowGroupFeed(small.store, small.schema.names, read_ahead=0)
    c = chunks.plan_chunk(small.store, one_part, small.schema.names, 1 << 20, feed)
    groups = list(c)
    assert all(g._rg is not None for g in groups)
    fresh = fg.open(small.root)
    assert all(g.to_arrow().equals(fresh[g.key].to_arrow()) for g in groups[:20])
    feed.release(c.codes, c.code_rows)
    feed.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=300))
def test_distinct_is_numpys_unique(pairs):
    values = np.asarray([(s << 32) + r for s, r in pairs], np.int64)
    expected = np.unique(values, return_index=True, return_inverse=True)
    for got, want in zip(chunks._distinct(values), expected):
        assert got.tolist() == want.reshape(-1).tolist()


class _Shards:
    """What _locate asks of a dataset's shards: row group starts per shard."""

    def __init__(self, starts: list[np.ndarray]) -> None:
        self._starts, self._keyed = starts, {}

    def _check(self, shard: int):
        return None, None, self._starts[shard]

    keyed_row_groups = shards_mod.ShardCache.keyed_row_groups


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=6), min_size=1, max_size=4),
       st.data())
def test_locate_finds_the_row_group_holding_each_part(sizes, data):
    starts = [np.concatenate([[0], np.cumsum(s)]).astype(np.int64) for s in sizes]
    n = data.draw(st.integers(0, 40))
    shard = np.asarray([data.draw(st.integers(0, len(sizes) - 1)) for _ in range(n)], np.int64)
    first = np.asarray([data.draw(st.integers(0, int(starts[s][-1]) - 1)) for s in shard],
                       np.int64)
    count = np.asarray([data.draw(st.integers(1, int(starts[s][-1]) - f))
                        for s, f in zip(shard, first)], np.int64)
    eligible = np.asarray([data.draw(st.booleans()) for _ in range(n)], bool)

    class _Store:
        shards = _Shards(starts)

    rg, lo = chunks._locate(_Store(), shard, first, count, eligible)
    for i in range(n):
        b = starts[shard[i]]
        r = int(np.searchsorted(b, first[i], side="right")) - 1
        whole = eligible[i] and first[i] + count[i] <= b[r + 1]
        assert (rg[i], lo[i]) == ((r, first[i] - b[r]) if whole else (-1, 0))
