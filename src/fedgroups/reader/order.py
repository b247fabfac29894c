"""Group order as pure functions of (seed, epoch): blocks, shuffles, slots, splits.

The order in which a stream visits groups is computed up front from the index alone, so
it never depends on timing, threads, pids or how far anyone has read. Resuming is then
just "skip the first ``position`` entries of the same array".

Two-level shuffle, for read locality (a 1 MiB row group holds many small groups):

1. groups, in physical order (shard, first row), are cut into *blocks* of about
   ``block_bytes`` — neighbours on disk, read together;
2. the blocks are permuted with a generator seeded by (seed, epoch);
3. the concatenated sequence is cut into one contiguous run per *slot* (a slot is one
   (rank, worker) pair), so slots never share blocks except at run boundaries and group
   counts differ by at most one;
4. each slot shuffles its run inside windows of ``buffer_size`` consecutive groups.

``buffer_size >= number of groups`` gives a uniform permutation of each slot's groups.
"""

from __future__ import annotations

import itertools

import numpy as np

_BLOCK_STREAM = 0  # sub-stream ids of the seed sequence, so draws never collide
_WINDOW_STREAM = 1
_SPLIT_STREAM = 2
_EXAMPLE_SPLIT_STREAM = 3
_WINDOW_LOOP = 64  # window_shuffle sorts window by window up to this many windows


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """A generator that is a pure function of (seed, *stream)."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *stream])))


def physical_blocks(ids: np.ndarray, location: np.ndarray, num_bytes: np.ndarray,
                    block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``ids`` by on-disk ``location`` and cut them into blocks of ~``block_bytes``.

    ``location`` and ``num_bytes`` are aligned with ``ids``. Returns the ids in physical
    order and the start offset of each block (``starts[0] == 0``). A block closes once it
    holds at least ``block_bytes``; a group larger than that is a block of its own.
    """
    order = np.argsort(location, kind="stable")
    ids = ids[order]
    if len(ids) == 0:
        return ids, np.zeros(0, np.int64)
    sizes = np.maximum(num_bytes[order].astype(np.int64), 1)
    # block number of each group = how many whole blocks of bytes precede it; cumulative
    # division keeps this vectorised (blocks are ~block_bytes, never empty).
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    block_of = before // max(block_bytes, 1)
    starts = np.flatnonzero(np.diff(block_of, prepend=-1)).astype(np.int64)
    return ids, starts


def permute_blocks(ids: np.ndarray, starts: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The ids with their blocks in a (seed, epoch)-permuted order."""
    if len(ids) == 0:
        return ids
    stops = np.append(starts[1:], len(ids))
    perm = rng_for(seed, _BLOCK_STREAM, epoch).permutation(len(starts))
    lengths = (stops - starts)[perm]
    # gather each permuted block's range without a Python loop
    offsets = np.repeat(starts[perm] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return ids[np.arange(len(ids)) + offsets]


def slot_range(total: int, slot: int, num_slots: int) -> tuple[int, int]:
    """Contiguous run [lo, hi) of ``total`` positions owned by ``slot`` (sizes differ by ≤ 1)."""
    if not 0 <= slot < num_slots:
        raise ValueError(f"slot {slot} out of range 0..{num_slots - 1}")
    return total * slot // num_slots, total * (slot + 1) // num_slots


def window_shuffle(ids: np.ndarray, buffer_size: int, seed: int, epoch: int,
                   slot: int) -> np.ndarray:
    """Permute ``ids`` inside consecutive windows of ``buffer_size`` entries."""
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
    if buffer_size == 1 or len(ids) < 2:
        return ids
    draws = rng_for(seed, _WINDOW_STREAM, epoch, slot).random(len(ids))
    if len(ids) > _WINDOW_LOOP * buffer_size:  # many small windows: one sort for all
        window = np.arange(len(ids)) // buffer_size
        return ids[np.lexsort((draws, window))]
    # the same order (each window sorted by its draws, ties in place), a window at a time:
    # a third of lexsort's time for 1M groups in windows of 16k (time to the first group)
    out = np.empty_like(ids)
    for lo in range(0, len(ids), buffer_size):
        hi = lo + buffer_size
        out[lo:hi] = ids[lo:hi][np.argsort(draws[lo:hi], kind="stable")]
    return out


def slot_order(ids: np.ndarray, location: np.ndarray, num_bytes: np.ndarray, *, shuffle: bool,
               seed: int, epoch: int, slot: int, num_slots: int, buffer_size: int,
               block_bytes: int) -> np.ndarray:
    """The group ids one slot visits in one epoch, in order.

    ``ids`` are the eligible group numbers in key order, ``location`` their physical
    position and ``num_bytes`` their sizes (aligned). Unshuffled, each slot gets a
    contiguous run of key order. Over all slots the result is a partition of ``ids``.
    """
    if shuffle:
        phys, starts = physical_blocks(ids, location, num_bytes, block_bytes)
        seq = permute_blocks(phys, starts, seed, epoch)
    else:
        seq = ids
    lo, hi = slot_range(len(seq), slot, num_slots)
    mine = seq[lo:hi]
    if shuffle:
        mine = window_shuffle(mine, buffer_size, seed, epoch, slot)
    return mine


def split_counts(n: int, fractions: list[float]) -> list[int]:
    """How many of ``n`` items each fraction gets: cumulative rounding, so counts sum ≤ n."""
    bounds = np.floor(np.cumsum([0.0, *fractions]) * n + 1e-9).astype(np.int64)
    bounds = np.minimum(bounds, n)
    return [int(b - a) for a, b in itertools.pairwise(bounds)]


def split_permutation(n: int, seed: int, stream: int = _SPLIT_STREAM) -> np.ndarray:
    """A permutation of range(n) that depends on (seed, n) only."""
    return rng_for(seed, stream).permutation(n)


EXAMPLE_SPLIT_STREAM = _EXAMPLE_SPLIT_STREAM
