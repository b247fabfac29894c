"""Chunks: a stream's groups planned together and served from whole decoded row groups.

A stream hands out groups one at a time, but reading them one at a time costs tens of
microseconds of Python per group — more than decoding a 10-example group. So a stream
plans a *chunk* (up to a thousand consecutive groups of its order, see stream.py):

1. the chunk's small single-part groups are located in their row groups with numpy, and
   the row groups all its small groups need are handed to the read-ahead feed
   (readahead.py) in the order the chunk first needs them;
2. as the consumer reaches each group, its row group is taken from the feed (waiting for
   it only if Arrow has not decoded it yet; the feed checks every row of it against the
   index once) and its Group is made with the row group and its row range:
   ``batches()`` hands out a zero-copy slice;
3. Python dicts are a slice of the group's row group converted whole (when the planned
   chunks need most of it: see RowGroupFeed.dicts), made with the group while the
   consumer takes every group's dicts; or, else, made when asked for, with the groups
   after it, a few thousand rows in one ``to_dicts`` (:class:`GatheredDicts`). Either way
   handed out per group, once.

Groups in several parts or crossing a row group boundary are read whole, once their row
groups are in the shard cache. Groups larger than ``preload_bytes`` stay lazy, so a group
larger than RAM is still read one row group at a time as the consumer iterates it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.format.rows import to_dicts
from fedgroups.reader.group import Group, Key, Part
from fedgroups.reader.readahead import RowGroupFeed
from fedgroups.reader.shards import ROW_BITS, DecodedRowGroup
from fedgroups.reader.store import Store

_TAKEN: list[dict[str, Any]] = []  # marks a group whose dicts were handed out


class GatheredDicts:
    """The rows of a chunk's groups as Python dicts, converted a few thousand rows at once.

    ``take(slot)`` returns the dicts of the ``slot``-th group once (later calls get None,
    so a group iterated twice converts its Arrow rows again and never shares dicts). The
    first request converts that group and small ones after it (those whose row groups are
    decoded and not converted whole by the feed), up to ``UNIT_ROWS`` rows, in one
    ``to_dicts``: one call instead of one per group, and few dicts alive at a time. A
    group of ``ALONE_ROWS`` or more is converted on its own: its call overhead is already
    small per row, and joining it to others would cost a copy.
    """

    UNIT_ROWS = 4096
    ALONE_ROWS = 32

    def __init__(self, batch_of: Callable[[int, bool], pa.RecordBatch | None], lo: list[int],
                 count: list[int]) -> None:
        # group ``slot`` is rows lo[slot]:lo[slot]+count[slot] of batch_of(slot, wait)
        # (None: a group of the per-group path, or not decoded yet and wait is False)
        self._batch_of, self._lo, self._count = batch_of, lo, count
        self._rows: list[list[dict[str, Any]] | None] = [None] * len(lo)
        self._lock = threading.Lock()

    def converted(self, slot: int) -> bool:
        return self._rows[slot] is not None

    def take(self, slot: int) -> list[dict[str, Any]] | None:
        with self._lock:
            rows = self._rows[slot]
            if rows is None:
                self._convert(slot)
                rows = self._rows[slot]
            self._rows[slot] = _TAKEN
        return None if rows is _TAKEN else rows

    def _convert(self, slot: int) -> None:
        count, state, batch_of = self._count, self._rows, self._batch_of
        slots, rgs, held = [slot], [batch_of(slot, True)], count[slot]
        if held < self.ALONE_ROWS:  # gather small groups after it, not yet converted
            for nxt in range(slot + 1, min(len(state), slot + self.UNIT_ROWS)):
                if held >= self.UNIT_ROWS - self.ALONE_ROWS:
                    break
                if state[nxt] is not None or count[nxt] >= self.ALONE_ROWS:
                    continue
                rg = batch_of(nxt, False)  # None: not decoded yet (never wait), or not ours
                if rg is not None:
                    slots.append(nxt)
                    rgs.append(rg)
                    held += count[nxt]
        lo = self._lo
        pieces = [rg.slice(lo[i], count[i]) for rg, i in zip(rgs, slots)]
        try:
            every = to_dicts(pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # schemas differ in metadata
            for i, b in zip(slots, pieces):
                state[i] = to_dicts(b)
            return
        at = 0
        for i in slots:
            state[i] = every[at:at + count[i]]
            at += count[i]


def _locate(store: Store, shard: np.ndarray, first: np.ndarray, count: np.ndarray,
            eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row group holding each eligible part whole (-1 if none: not eligible, or the part
    crosses a row group boundary) and the part's first row inside it."""
    rg = np.full(len(shard), -1, np.int64)
    lo = np.zeros(len(shard), np.int64)
    where = np.flatnonzero(eligible)
    if not len(where):
        return rg, lo
    # the row groups of the shards it touches (few; numbered below the manifest's count:
    # bincount, not np.unique, which hashes every row), searched all at once
    s = shard[where]
    found = [store.shards.keyed_row_groups(t) for t in np.flatnonzero(np.bincount(s)).tolist()]
    starts, stops, number = (np.concatenate(arrays) for arrays in zip(*found))
    row = (s << ROW_BITS) + first[where]
    i = np.searchsorted(starts, row, side="right") - 1  # >= 0: each shard's first is 0
    inside = row + count[where] <= stops[i]
    i, row, where = i[inside], row[inside], where[inside]
    rg[where] = number[i]
    lo[where] = row - starts[i]
    return rg, lo


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_index=True, return_inverse=True)``: the sorted distinct
    values, where each is first seen, and each value's place among them — with a plain
    sort and a search instead of np.unique's stable argsort (a third less time for the
    few dozen row groups of a chunk of a thousand groups)."""
    uniq = np.unique(values)
    inverse = np.searchsorted(uniq, values)
    first = np.full(len(uniq), len(values), np.int64)
    np.minimum.at(first, inverse, np.arange(len(values)))
    return uniq, first, inverse


Other = tuple[int, list[Part], list[int] | None]
"""A chunk's group not served from one row group: (group id, parts, the row groups to
decode before reading it whole — None for a group too large to read whole)."""


class Chunk:
    """Consecutive groups of a stream, planned. Iterating makes the Groups as the consumer
    reaches them, each waiting only for its own row group (so the consumer starts on a
    shuffled chunk after one decode, not after all of them)."""

    def __init__(self, store: Store, columns: list[str], keys: list[Key],
                 shard: np.ndarray, first: np.ndarray, count: list[int], which: list[int],
                 feed: RowGroupFeed, uniq: list[int], lo: list[int], nbytes: list[int],
                 nwords: list[int], others: dict[int, Other], codes: list[int],
                 code_rows: list[int]) -> None:
        # group i: rows lo[i]:lo[i]+count[i] of row group uniq[which[i]] (decoded into
        # decoded[which[i]] when first reached), or, where which[i] is -1, the group
        # others[i], read whole (after its row groups are decoded) when reached
        self._store, self._columns, self._keys = store, columns, keys
        self._shard, self._first, self._count = shard, first, count
        self._which, self._feed, self._uniq, self._lo = which, feed, uniq, lo
        self._decoded: list[DecodedRowGroup | None] = [None] * len(uniq)
        self._nbytes, self._nwords, self._others = nbytes, nwords, others
        self.codes = codes  # the row groups it needs (shard << 32 | row group)
        self.code_rows = code_rows  # rows of each its small groups need
        self._dicts_ok = columns == store.columns  # Group.__iter__ yields every column
        self._dicts: GatheredDicts | None = None
        self._taken = bytearray(len(keys))  # groups whose dicts were handed out
        self._whole: list[list[dict[str, Any]] | None] = [None] * len(uniq)  # see take
        self._lock = threading.Lock()
        self.handed = 0  # groups handed out by __iter__ (counted before each is)

    def __len__(self) -> int:
        return len(self._keys)

    def part(self, slot: int) -> tuple[int, int, int]:
        return int(self._shard[slot]), int(self._first[slot]), self._count[slot]

    def finish(self) -> None:
        """The stream has handed out all its groups: drop the dicts of whole row groups (a
        group kept by the caller holds its chunk; its rows are converted afresh if asked)."""
        with self._lock:
            self._whole = [None] * len(self._whole)
            self._dicts = None

    def _row_group(self, k: int) -> DecodedRowGroup:
        rb = self._decoded[k]
        if rb is None:
            rb = self._decoded[k] = self._feed.resolve(self._uniq[k])
        return rb

    def _batch_of(self, slot: int, wait: bool) -> pa.RecordBatch | None:
        """Group ``slot``'s row group; without ``wait`` (gathering the groups after one
        asked for), None unless decoded and its dicts are still to be made here."""
        k = self._which[slot]
        if k < 0:
            return None
        if not wait and (self._taken[slot] or self._feed.has_dicts(self._uniq[k])):
            return None
        rb = self._decoded[k] or self._feed.peek(self._uniq[k])
        if rb is None and wait:
            rb = self._row_group(k)
        return None if rb is None else rb.batch

    def _whole_dicts(self, k: int) -> list[dict[str, Any]] | None:
        every = self._whole[k]
        if every is None:
            every = self._whole[k] = self._feed.dicts(self._uniq[k])
        return every

    def take(self, slot: int) -> list[dict[str, Any]] | None:
        """Group ``slot``'s rows as dicts, once (None the second time: the group converts
        its rows again): a slice of its row group's dicts if the feed converts that whole
        (see :meth:`RowGroupFeed.dicts`), else with the groups after it
        (:class:`GatheredDicts`).
        Tells the feed the stream is iterated as dicts: later groups get theirs made with
        them (see ``__iter__``)."""
        if not self._dicts_ok:
            return None
        self._feed.wants_dicts = True
        with self._lock:
            if self._taken[slot]:
                return None
            self._taken[slot] = 1
            block = self._dicts
            k = self._which[slot]
            if k >= 0 and (block is None or not block.converted(slot)):
                every = self._whole_dicts(k)
                if every is not None:
                    x = self._lo[slot]
                    return every[x:x + self._count[slot]]
            if block is None:
                block = self._dicts = GatheredDicts(self._batch_of, self._lo, self._count)
        return block.take(slot)

    def __iter__(self) -> Iterator[Group]:
        # While the consumer takes every group's dicts (feed.wants_dicts, and the previous
        # group's were taken), a group comes with its slice of its row group's dicts ready
        # (and marked taken, so iterating it again converts afresh, never shares them).
        store, columns, decoded, others, feed = self._store, self._columns, self._decoded, \
            self._others, self._feed
        files, taken, whole, dicts_ok = store.group_files, self._taken, self._whole, \
            self._dicts_ok
        make = Group.make
        ready: list[list[dict[str, Any]]] | None = None  # the previous group's
        for slot, (key, k, x, n, nb, nw) in enumerate(zip(
                self._keys, self._which, self._lo, self._count, self._nbytes, self._nwords)):
            if k < 0:
                gid, parts, needs = others[slot]
                batches = None
                if needs is not None:  # its row groups into the shard cache, then read it
                    for code in needs:
                        feed.resolve(code)
                    batches = store.read_group(parts, columns, key)
                self.handed = slot + 1
                yield store.group(gid, key, batches=batches,
                                  batch_columns=None if batches is None else columns)
                continue
            rb = decoded[k]
            if rb is None:
                rb = self._row_group(k)
            mine = None  # this group's dicts, if made with it
            if dicts_ok and feed.wants_dicts:
                if ready:  # not taken: the consumer stopped asking for dicts
                    feed.wants_dicts = False
                else:
                    every = whole[k]
                    if every is None:
                        every = self._whole_dicts(k)
                    if every is not None and not taken[slot]:
                        taken[slot] = 1
                        mine = ready = [every[x:x + n]]
            self.handed = slot + 1
            # rows x:x+n of the row group, the slot-th group of this chunk (see Group.make)
            yield make(key, n, nb, nw, files, columns, rb.batch, x, self, slot, mine)


def plan_chunk(store: Store, ids: np.ndarray, columns: list[str], preload_bytes: int,
               feed: RowGroupFeed) -> Chunk:
    """The groups ``ids`` (in this order), the row groups they need told to ``feed`` in the
    order the chunk first needs them. Groups over ``preload_bytes`` need none: they stay
    lazy and are read row group by row group as the consumer iterates them."""
    a = store.arrays
    keys = store.keys(ids)
    part0 = a.starts[ids]
    nbytes = a.bytes[ids]
    shard, first, count = a.part_shard[part0], a.part_first[part0], a.part_rows[part0]
    eligible = (a.stops[ids] - part0 == 1) & (nbytes <= preload_bytes)
    rg, lo = _locate(store, shard, first, count, eligible)
    which = np.full(len(ids), -1, np.int64)
    blocked = rg >= 0
    code = (shard << 32) + rg
    uniq = first_at = np.zeros(0, np.int64)
    if blocked.any():
        uniq, first_at, which[blocked] = _distinct(code[blocked])
    # row groups of the other small groups (crossing a row group boundary, or in parts)
    others: dict[int, Other] = {}
    at, extra = [np.flatnonzero(blocked)], [code[blocked]]
    for i in np.flatnonzero(~blocked).tolist():
        gid = int(ids[i])
        parts = store.parts(gid)
        needs = None
        if nbytes[i] <= preload_bytes:
            needs = [(p.shard << 32) + r for p in parts for r, _, _ in
                     store.shards.get(p.shard).row_group_slices(p.first_row, p.num_rows)]
            at.append(np.full(len(needs), i))
            extra.append(np.asarray(needs, np.int64))
        others[i] = (gid, parts, needs)
    codes, code_rows = [], []
    if len(at) > 1:  # some groups of the other kind: their row groups too
        pos, every = np.concatenate(at), np.concatenate(extra)
        distinct, first_at = np.unique(every, return_index=True)
    else:  # the common case: the unique row groups found above
        pos, distinct = at[0], uniq
    if len(distinct):
        need = distinct[np.argsort(pos[first_at], kind="stable")]  # in order of first need
        rows = dict(zip(uniq.tolist(), np.bincount(
            which[blocked], weights=count[blocked], minlength=len(uniq)).astype(int).tolist()))
        codes = need.tolist()
        code_rows = [rows.get(c, 0) for c in codes]
        feed.need(codes, code_rows)
    return Chunk(store, columns, keys, shard, first, count.tolist(), which.tolist(), feed,
                 uniq.tolist(), lo.tolist(), nbytes.tolist(), a.words[ids].tolist(), others,
                 codes, code_rows)
