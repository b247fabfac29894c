"""Group streams over real built datasets: coverage, determinism, sharding, resume."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedgroups as fg
from fedgroups.errors import SettingError

SMALL = {"buffer_size": 64, "block_bytes": 2048}  # many blocks even in a small dataset


def keys_of(ds: fg.GroupedDataset, **kw) -> list:
    return [g.key for g in ds.groups(**kw)]


def test_every_group_once_per_epoch_with_all_examples(small):
    seen = {}
    for g in small.groups(seed=3, **SMALL):
        rows = list(g)
        assert len(rows) == g.num_examples and all(r["user"] == g.key for r in rows)
        seen[g.key] = len(rows)
    assert sorted(seen) == small.keys()
    assert sum(seen.values()) == small.num_examples


def test_order_pure_in_seed_and_epoch_and_epochs_differ(small):
    a = keys_of(small, seed=5, epoch=0, **SMALL)
    assert a == keys_of(small, seed=5, epoch=0, prefetch=0, **SMALL)  # threads change nothing
    assert a == keys_of(fg.open(small.root), seed=5, epoch=0, num_threads=1, **SMALL)
    assert a != keys_of(small, seed=5, epoch=1, **SMALL)
    assert a != keys_of(small, seed=6, epoch=0, **SMALL)
    assert keys_of(small, shuffle=False) == small.keys()


def test_stream_keys_match_iteration_without_reading(small):
    it = small.groups(seed=1, **SMALL)
    assert it.keys() == keys_of(small, seed=1, **SMALL)
    assert len(it) == len(small)


@settings(max_examples=12, deadline=None)
@given(world_size=st.integers(1, 3), num_workers=st.integers(1, 3), epoch=st.integers(0, 5),
       seed=st.integers(0, 2**31))
def test_ranks_times_workers_partition_groups(small, world_size, num_workers, epoch, seed):
    parts = [small.groups(seed=seed, epoch=epoch, rank=r, world_size=world_size, worker=w,
                          num_workers=num_workers, **SMALL).keys()
             for r in range(world_size) for w in range(num_workers)]
    flat = [k for p in parts for k in p]
    assert sorted(flat) == small.keys()
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@settings(max_examples=15, deadline=None)
@given(stop=st.integers(0, 300), seed=st.integers(0, 1000), rank=st.integers(0, 1))
def test_resume_yields_exactly_the_rest(small, stop, seed, rank):
    kw = dict(seed=seed, epoch=2, rank=rank, world_size=2, **SMALL)
    full = small.groups(**kw).keys()
    it = small.groups(**kw)
    head = [next(it).key for _ in range(min(stop, len(full)))]
    state = json.loads(json.dumps(it.state_dict()))  # a plain JSON dict
    it.close()
    rest = [g.key for g in small.groups(**kw, state=state)]
    assert head + rest == full


def test_resume_checks_settings(small):
    it = small.groups(seed=1, **SMALL)
    next(it)
    state = it.state_dict()
    with pytest.raises(SettingError, match="epoch: state has 0, call has 1"):
        small.groups(seed=1, epoch=1, state=state, **SMALL)
    with pytest.raises(SettingError, match="selection"):
        small.groups(seed=1, min_examples=5, state=state, **SMALL)
    with pytest.raises(SettingError, match="not a fedgroups stream state"):
        small.groups(state={"position": 3})


def test_filters_and_keys(small):
    sizes = dict(zip(small.keys(), small.group_sizes()))
    got = keys_of(small, min_examples=5, max_examples=10, seed=0)
    assert sorted(got) == sorted(k for k, n in sizes.items() if 5 <= n <= 10)
    some = small.keys()[10:20]
    assert sorted(keys_of(small, keys=some[::-1])) == some
    with pytest.raises(KeyError, match="no group 'nope'"):
        small.groups(keys=["nope"])
    with pytest.raises(SettingError, match="min_examples"):
        small.groups(min_examples=5, max_examples=2)


@pytest.mark.parametrize("bad", [{"rank": 2, "world_size": 2}, {"seed": -1},
                                 {"buffer_size": 0}, {"worker": 1}])
def test_bad_settings_are_named(small, bad):
    with pytest.raises(SettingError):
        small.groups(**bad)


def test_streamed_groups_read_columns_and_batches(small):
    for g in small.groups(columns=["i"], seed=0):
        batches = list(g.batches(4, columns=["i"]))
        assert [b.num_rows for b in batches][:-1] == [4] * (len(batches) - 1)
        assert sum(b.num_rows for b in batches) == g.num_examples
        assert g.to_arrow(["text"]).num_rows == g.num_examples  # not preloaded: read lazily
        break


def test_views_stream_only_their_groups(small):
    parts = small.split_groups({"train": 0.8, "test": 0.2}, seed=0)
    assert sorted(keys_of(parts["test"], seed=0)) == parts["test"].keys()


def test_large_groups_in_many_parts_stream_whole(parted_path):
    ds = fg.open(parted_path)
    got = {g.key: sum(b.num_rows for b in g.batches(100))
           for g in ds.groups(seed=0, buffer_size=4)}
    assert got == dict(zip(ds.keys(), ds.group_sizes().tolist()))
    assert len(ds["big"].parts) > 1
