"""Block-level reads for streams: a chunk of groups read row group by row group, at once.

A stream hands out groups one at a time, but reading them one at a time costs tens of
microseconds of Python per group — more than decoding a 10-example group. So a stream
reads a *chunk* (up to a thousand consecutive groups of its order, see stream.py) on a
prefetch thread:

1. the chunk's small single-part groups are located in their row groups with numpy;
2. each row group they touch is decoded once, with its runs of equal keys (through the
   shard cache, which later chunks share);
3. the whole chunk is checked at once against those runs (numpy and Arrow compute): each
   group's rows must be exactly one run of its key, as on the per-group path. A damaged
   index raises when the consumer reaches the first group it gets wrong;
4. as the consumer reaches each group, its Group is made with the decoded row group and
   its row range: ``batches()`` hands out a zero-copy slice;
5. Python dicts, when the consumer asks a group for them, are made for it and the groups
   after it, a few thousand rows in one ``to_pylist`` (:class:`DictBlock`), and handed out
   per group, once.

Everything else — groups in several parts, groups crossing a row group boundary, and
groups larger than ``preload_bytes`` — takes the per-group path, so a group larger than
RAM is still read one row group at a time as the consumer iterates it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import CorruptDatasetError
from fedgroups.reader.group import Group
from fedgroups.reader.shards import _RunBatch

if TYPE_CHECKING:
    from fedgroups.reader.dataset import GroupedDataset

_TAKEN: list[dict[str, Any]] = []  # marks a group whose dicts were handed out


class DictBlock:
    """The rows of a chunk's groups as Python dicts, converted a few thousand rows at once.

    ``take(slot)`` returns the dicts of the ``slot``-th group once (later calls get None,
    so a group iterated twice converts its Arrow rows again and never shares dicts). The
    first request converts that group and the following small ones, up to ``UNIT_ROWS``
    rows, in one ``to_pylist``: one call instead of one per group, and few dicts alive at a
    time. A group of ``ALONE_ROWS`` or more is converted on its own: its call overhead is
    already small per row, and joining it to others would cost a copy.
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
        end, held = slot + 1, count[slot]
        rgs = [batch_of(slot, True)]
        if held < self.ALONE_ROWS:  # gather the small groups that follow, not yet converted
            while (end < len(state) and state[end] is None and count[end] < self.ALONE_ROWS
                   and held + count[end] <= self.UNIT_ROWS):
                rg = batch_of(end, False)  # never wait here for a later group's row group
                if rg is None:
                    break
                rgs.append(rg)
                held += count[end]
                end += 1
        pieces = [rg.slice(x, n) for rg, x, n in zip(rgs, self._lo[slot:end], count[slot:end])]
        try:
            every = (pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # schemas differ in metadata
            state[slot:end] = [b.to_pylist() for b in pieces]
            return
        bounds = itertools.accumulate(count[slot:end], initial=0)
        state[slot:end] = [every[a:b] for a, b in itertools.pairwise(bounds)]


def _locate(ds: GroupedDataset, shard: np.ndarray, first: np.ndarray, count: np.ndarray,
            eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row group holding each eligible part whole (-1 if none: not eligible, or the part
    crosses a row group boundary) and the part's first row inside it."""
    rg = np.full(len(shard), -1, np.int64)
    lo = np.zeros(len(shard), np.int64)
    for s in np.unique(shard[eligible]).tolist():  # a chunk touches few shards
        where = np.flatnonzero(eligible & (shard == s))
        starts = ds._shards.get(s).row_group_starts
        r = np.searchsorted(starts, first[where], side="right") - 1
        inside = first[where] + count[where] <= starts[r + 1]
        rg[where[inside]] = r[inside]
        lo[where[inside]] = first[where[inside]] - starts[r[inside]]
    return rg, lo


class Chunk:
    """Consecutive groups of a stream. Its row groups are decoded by prefetch threads in
    the order the chunk first needs them; iterating makes the Groups as the consumer
    reaches them, each waiting only for its own row group (so the consumer starts on a
    shuffled chunk after one decode, not after all of them)."""

    def __init__(self, ds: GroupedDataset, columns: list[str], keys: list[Any],
                 parts: list[tuple[int, int, int]], which: list[int], feed: RowGroupFeed,
                 uniq: list[int], runs: list[_RunBatch | Future[pa.Table]],
                 lo: list[int], nbytes: list[int], nwords: list[int],
                 others: dict[int, tuple[Group, Future[None] | None]], codes: list[int],
                 ) -> None:
        # group i: rows lo[i]:lo[i]+parts[i].num_rows of runs[which[i]] (row group
        # uniq[which[i]] of the feed), or, where which[i] is -1, the group others[i][0]
        # once others[i][1] (its read) is done
        self._ds, self._columns, self._keys, self._parts = ds, columns, keys, parts
        self._which, self._feed, self._uniq, self._runs, self._lo = which, feed, uniq, runs, lo
        self._nbytes, self._nwords, self._others = nbytes, nwords, others
        self.codes = codes  # the row groups it needs (shard << 32 | row group)
        self._dicts: DictBlock | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def _run(self, k: int) -> _RunBatch:
        rb = self._runs[k]
        if not isinstance(rb, _RunBatch):
            rb = self._runs[k] = self._feed.resolve(self._uniq[k], rb)
        return rb

    def _batch_of(self, slot: int, wait: bool) -> pa.RecordBatch | None:
        k = self._which[slot]
        if k < 0:
            return None
        rb = self._runs[k]
        if isinstance(rb, _RunBatch):
            return rb.batch
        ready = rb.done() and not rb.cancelled()  # cancelled: the stream was closed
        return self._run(k).batch if wait or ready else None

    def take(self, slot: int) -> list[dict[str, Any]] | None:
        """Group ``slot``'s rows as dicts, once (see :class:`DictBlock`)."""
        if self._dicts is None:
            with self._lock:
                if self._dicts is None:
                    count = [p[2] for p in self._parts]
                    self._dicts = DictBlock(self._batch_of, self._lo, count)
        return self._dicts.take(slot)

    def __iter__(self) -> Iterator[Group]:
        # Group slots are set here directly: a stream makes tens of thousands of groups a
        # second, and Group.__init__'s general case would cost more than the rest together
        ds, columns, runs, others = self._ds, self._columns, self._runs, self._others
        schema, names, shards = ds.schema, ds._columns, ds._shards
        dicts = self if columns == names else None  # what Group.__iter__ yields
        new = object.__new__
        for slot, (key, part, k, x, nb, nw) in enumerate(zip(
                self._keys, self._parts, self._which, self._lo, self._nbytes, self._nwords)):
            if k < 0:
                g, read = others[slot]
                if read is not None:
                    read.result()
                yield g
                continue
            rb = runs[k]
            if rb.__class__ is not _RunBatch:
                rb = self._run(k)
            if rb.runs.get(x) != (x + part[2], key):  # exactly one run of its key, as always
                raise CorruptDatasetError(
                    f"{shards.get(part[0]).path}: rows {part[1]}..{part[1] + part[2]} should "
                    f"hold exactly group {key!r}; the index and shard disagree — rebuild the "
                    "dataset")
            g = new(Group)
            g.key, g._parts, g.num_examples = key, part, part[2]
            g.num_bytes = g._total_bytes = nb
            g.num_words = g._total_words = nw
            g.schema, g._columns, g._shards, g._rows = schema, names, shards, None
            g._preloaded, g._preloaded_cols, g._rg, g._lo = None, columns, rb.batch, x
            g._block, g._slot = dicts, slot
            yield g


class RowGroupFeed:
    """Row groups queued for decoding on a thread pool (``num_threads`` 0: decoded at
    once, in the caller's thread), each once while some planned chunk needs it.

    A thread only decodes (:meth:`ShardCache.read_table`: one call that releases the GIL);
    finding the key runs takes many short calls and happens in the consumer, which holds
    the GIL anyway (:meth:`resolve`). A thread that needed the GIL back after each of them
    would wait up to the interpreter's switch interval (5 ms) every time.
    ``held_bytes`` (their uncompressed size) tells the stream how far ahead it has planned:
    the memory that read-ahead costs.
    """

    def __init__(self, ds: GroupedDataset, columns: list[str], num_threads: int) -> None:
        self._shards, self._cols = ds._shards, tuple(columns)
        self._pool = ThreadPoolExecutor(num_threads, "fedgroups-prefetch") \
            if num_threads else None
        self._held: dict[int, list[Any]] = {}  # code -> [_RunBatch or future, users, bytes]
        self.held_bytes = 0

    def get(self, code: int) -> _RunBatch | Future[pa.Table]:
        """Row group ``code`` (shard << 32 | row group): decoded, or a future of its
        table (then :meth:`resolve` it)."""
        entry = self._held.get(code)
        if entry is None:
            s, r = code >> 32, code & 0xFFFFFFFF
            rb: _RunBatch | Future[pa.Table] | None = self._shards.cached_run_batch(
                s, r, self._cols)
            if rb is None:
                if self._pool is None:
                    rb = self._shards.run_batch(s, r, self._cols)
                else:
                    rb = self._pool.submit(self._shards.read_table, s, r, self._cols)
            size = self._shards.row_group_bytes(s)[r]
            entry = self._held[code] = [rb, 0, size]
            self.held_bytes += size
        entry[1] += 1
        return entry[0]

    def resolve(self, code: int, table: Future[pa.Table]) -> _RunBatch:
        """Row group ``code`` decoded from ``table`` (what :meth:`get` gave), waiting for
        its thread if need be; once per row group while it is held."""
        entry = self._held.get(code)
        if entry is not None and isinstance(entry[0], _RunBatch):
            return entry[0]
        rb = self._shards.run_batch(code >> 32, code & 0xFFFFFFFF, self._cols, table.result())
        if entry is not None:
            entry[0] = rb
        return rb

    def submit(self, fn: Callable[[], None]) -> Future[None] | None:
        """Run ``fn`` on the pool (None: it ran now)."""
        if self._pool is None:
            fn()
            return None
        return self._pool.submit(fn)

    def release(self, codes: list[int]) -> None:
        """A chunk that needed these row groups is done with them."""
        for code in codes:
            entry = self._held[code]
            entry[1] -= 1
            if not entry[1]:
                del self._held[code]
                self.held_bytes -= entry[2]

    def close(self) -> None:
        self._held.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def plan_chunk(ds: GroupedDataset, ids: np.ndarray, columns: list[str], preload_bytes: int,
               feed: RowGroupFeed) -> Chunk:
    """The groups ``ids`` (in this order): the row groups their small ones lie in are
    queued on ``feed`` in the order the chunk first needs them."""
    a = ds._a
    keys = ds._keys_of(ids)
    part0 = a.starts[ids]
    nbytes = a.bytes[ids]
    shard, first, count = a.part_shard[part0], a.part_first[part0], a.part_rows[part0]
    eligible = (a.stops[ids] - part0 == 1) & (nbytes <= preload_bytes)
    rg, lo = _locate(ds, shard, first, count, eligible)
    which = np.full(len(ids), -1, np.int64)
    blocked = rg >= 0
    codes: list[int] = []
    runs: list[_RunBatch | Future[pa.Table]] = []
    uniq_codes: list[int] = []
    if blocked.any():
        uniq, at, which[blocked] = np.unique((shard[blocked] << 32) + rg[blocked],
                                             return_index=True, return_inverse=True)
        codes = uniq[np.argsort(at, kind="stable")].tolist()  # in order of first need
        found = {c: feed.get(c) for c in codes}
        uniq_codes = uniq.tolist()
        runs = [found[c] for c in uniq_codes]
    others: dict[int, tuple[Group, Future[None] | None]] = {}
    for i in np.flatnonzero(~blocked).tolist():  # several parts or row groups, or big
        g = ds._group_at(int(ids[i]), keys[i])
        read = None
        if nbytes[i] <= preload_bytes:  # the per-group path (checked as it reads)
            read = feed.submit(partial(g._preload, columns))
        others[i] = (g, read)
    parts = list(zip(shard.tolist(), first.tolist(), count.tolist()))  # see Group.parts
    return Chunk(ds, columns, keys, parts, which.tolist(), feed, uniq_codes, runs, lo.tolist(),
                 nbytes.tolist(), a.words[ids].tolist(), others, codes)
