"""Invariants of the pure order functions (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.reader.order import (
    _WINDOW_STREAM,
    permute_blocks,
    physical_blocks,
    rng_for,
    slot_order,
    slot_range,
    split_counts,
    window_shuffle,
)

sizes_st = st.lists(st.integers(1, 5000), min_size=0, max_size=300)


def _inputs(sizes: list[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(sizes)
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # not 0..n-1: ids are group numbers
    location = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return ids, location, np.asarray(sizes, dtype=np.int64)


def _order(sizes, seed, epoch, slot, num_slots, buffer_size, shuffle=True):
    ids, loc, nb = _inputs(sizes, 7)
    return slot_order(ids, loc, nb, shuffle=shuffle, seed=seed, epoch=epoch, slot=slot,
                      num_slots=num_slots, buffer_size=buffer_size, block_bytes=4096)


@settings(max_examples=150, deadline=None)
@given(sizes_st, st.integers(0, 2**32), st.integers(0, 50), st.integers(1, 9),
       st.integers(1, 64), st.booleans())
def test_slots_partition_every_epoch_exactly(sizes, seed, epoch, num_slots, buffer_size,
                                             shuffle):
    parts = [_order(sizes, seed, epoch, s, num_slots, buffer_size, shuffle)
             for s in range(num_slots)]
    every = np.concatenate(parts)
    ids, _, _ = _inputs(sizes, 7)
    assert sorted(every.tolist()) == ids.tolist()  # each group exactly once
    counts = [len(p) for p in parts]
    assert max(counts) - min(counts) <= 1  # balanced ranks: no rank waits for another


@settings(max_examples=100, deadline=None)
@given(sizes_st, st.integers(0, 2**32), st.integers(0, 50), st.integers(1, 4),
       st.integers(1, 64))
def test_order_is_a_pure_function_of_the_settings(sizes, seed, epoch, num_slots, buffer_size):
    for slot in range(num_slots):
        a = _order(sizes, seed, epoch, slot, num_slots, buffer_size)
        b = _order(list(sizes), seed, epoch, slot, num_slots, buffer_size)
        assert a.tolist() == b.tolist()


def test_epochs_and_seeds_differ():
    sizes = [100] * 2000
    base = _order(sizes, 0, 0, 0, 1, 256)
    assert base.tolist() != _order(sizes, 0, 1, 0, 1, 256).tolist()
    assert base.tolist() != _order(sizes, 1, 0, 0, 1, 256).tolist()


def test_unshuffled_is_key_order_in_contiguous_runs():
    sizes = [10] * 10
    parts = [_order(sizes, 0, 0, s, 3, 4, shuffle=False) for s in range(3)]
    ids, _, _ = _inputs(sizes, 7)
    assert np.concatenate(parts).tolist() == ids.tolist()


@settings(max_examples=100, deadline=None)
@given(sizes_st, st.integers(1, 100_000))
def test_blocks_follow_disk_order_and_cover_all(sizes, block_bytes):
    ids, loc, nb = _inputs(sizes, 3)
    phys, starts = physical_blocks(ids, loc, nb, block_bytes)
    assert sorted(phys.tolist()) == sorted(ids.tolist())
    assert (np.diff(loc[(phys - 1) // 3]) > 0).all()  # ids → positions → locations increase
    if len(ids):
        assert starts[0] == 0 and (np.diff(starts) > 0).all()
        # a block closes once it has block_bytes: all but the last hold at least that much
        stops = np.append(starts[1:], len(phys))
        sizes_phys = nb[(phys - 1) // 3]
        held = [int(sizes_phys[a:b].sum()) for a, b in zip(starts, stops)]
        assert all(h >= 1 for h in held)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=40), st.integers(0, 1000))
def test_permute_blocks_keeps_blocks_whole(block_lengths, seed):
    starts = np.concatenate([[0], np.cumsum(block_lengths)[:-1]]).astype(np.int64)
    ids = np.arange(sum(block_lengths), dtype=np.int64)
    out = permute_blocks(ids, starts, seed, 0)
    assert sorted(out.tolist()) == ids.tolist()
    block_of = np.repeat(np.arange(len(block_lengths)), block_lengths)
    seen = block_of[out]
    # every block appears as one contiguous run, in its original inner order
    runs = [seen[0]] + [b for a, b in itertools.pairwise(seen) if a != b]
    assert len(runs) == len(block_lengths)
    assert (np.diff(out)[np.diff(seen) == 0] == 1).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 500), st.integers(1, 50), st.integers(0, 99))
def test_window_shuffle_only_moves_inside_windows(n, buffer_size, seed):
    ids = np.arange(n, dtype=np.int64)
    out = window_shuffle(ids, buffer_size, seed, 0, 0)
    assert ((out // buffer_size) == (ids // buffer_size)).all()
    assert sorted(out.tolist()) == ids.tolist()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 400), st.integers(0, 99), st.integers(0, 3))
def test_window_shuffle_is_the_lexsort_order(n, buffer_size, seed, slot):
    # states resume by position, so the order of a (seed, epoch, slot) never changes:
    # each window sorted by its draws, ties kept in place (however it is computed)
    ids = np.arange(n, dtype=np.int64) * 5 + 2
    draws = rng_for(seed, _WINDOW_STREAM, 0, slot).random(n)
    expected = ids[np.lexsort((draws, np.arange(n) // buffer_size))]
    assert window_shuffle(ids, buffer_size, seed, 0, slot).tolist() == expected.tolist()


def test_full_buffer_gives_a_uniform_looking_permutation():
    # position of group 0 over many seeds is spread over the whole range
    firsts = [int(_order([1] * 50, s, 0, 0, 1, 10_000)[0]) for s in range(400)]
    assert len(set(firsts)) > 40


@given(st.integers(0, 10_000), st.integers(1, 50))
def test_slot_range_tiles(total, num_slots):
    ranges = [slot_range(total, s, num_slots) for s in range(num_slots)]
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


@given(st.integers(0, 10_000), st.lists(st.floats(0.01, 1.0), min_size=1, max_size=5))
def test_split_counts_never_exceed_n(n, fractions):
    total = sum(fractions)
    fractions = [f / total for f in fractions]
    counts = split_counts(n, fractions)
    assert sum(counts) == n and all(c >= 0 for c in counts)


def _block_order(seed: int, epoch: int) -> list[int]:
    """The blocks a one-slot stream visits, in order, at ``buffer_size=1`` (no window
    shuffle: only the block permutation moves groups)."""
    sizes = [1024] * 400  # 100 blocks of 4 groups at block_bytes=4096
    ids, loc, nb = _inputs(sizes, 7)
    phys, starts = physical_blocks(ids, loc, nb, 4096)
    lengths = np.diff(np.append(starts, len(phys)))
    block_of = dict(zip(phys.tolist(), np.repeat(np.arange(len(starts)), lengths).tolist()))
    blocks = [block_of[g] for g in _order(sizes, seed, epoch, 0, 1, buffer_size=1).tolist()]
    assert blocks == np.repeat(blocks[::4], 4).tolist()  # each block whole, in one piece
    return blocks[::4]


def test_block_order_changes_with_the_epoch_at_buffer_size_1():
    """The block permutation alone must depend on the epoch: with buffer_size=1 no window
    shuffle hides a permutation that ignores it."""
    orders = {epoch: _block_order(3, epoch) for epoch in range(4)}
    assert all(sorted(o) == list(range(100)) for o in orders.values())  # whole blocks
    assert len({tuple(o) for o in orders.values()}) == 4  # every epoch its own order
    assert orders[2] == _block_order(3, 2)  # the same epoch, the same order
    assert _block_order(4, 2) != orders[2]  # and the seed matters too
