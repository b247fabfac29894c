"""Block-level reads for streams: a chunk of groups read row group by row group, at once.

A stream hands out groups one at a time, but reading them one at a time costs tens of
microseconds of Python per group — more than decoding a 10-example group. So a stream
reads a *chunk* (up to a thousand consecutive groups of its order, see stream.py):

1. the chunk's small single-part groups are located in their row groups with numpy;
2. each row group they touch is decoded once, with its runs of equal keys (through the
   shard cache, which later chunks share);
3. as the consumer reaches each group, a dict lookup checks that its rows are exactly one
   run of its key (as on the per-group path), and its Group gets the decoded row group
   and its row range: ``batches()`` hands out a zero-copy slice;
4. Python dicts, when the consumer asks a group for them, are made for it and the groups
   after it, a few thousand rows in one ``to_pylist`` (:class:`DictBlock`), and handed out
   per group, once.

Everything else — groups in several parts, groups crossing a row group boundary, and
groups larger than ``preload_bytes`` — takes the per-group path, so a group larger than
RAM is still read one row group at a time as the consumer iterates it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import CorruptDatasetError
from fedgroups.reader.group import Group, Part
from fedgroups.reader.shards import _RunBatch

if TYPE_CHECKING:
    from fedgroups.reader.dataset import GroupedDataset

_tuple_new = tuple.__new__


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

    def __init__(self, batches: list[pa.RecordBatch], which: list[int], lo: list[int],
                 count: list[int]) -> None:
        # group ``slot`` is rows lo[slot]:lo[slot]+count[slot] of batches[which[slot]]
        self._batches, self._which, self._lo, self._count = batches, which, lo, count
        self._rows: list[list[dict[str, Any]] | None] = [None] * len(which)
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
        count, state = self._count, self._rows
        end, held = slot + 1, count[slot]
        if held < self.ALONE_ROWS:  # gather the small groups that follow, not yet converted
            while (end < len(state) and state[end] is None and count[end] < self.ALONE_ROWS
                   and held + count[end] <= self.UNIT_ROWS):
                held += count[end]
                end += 1
        pieces = [self._batches[k].slice(x, n) for k, x, n in
                  zip(self._which[slot:end], self._lo[slot:end], count[slot:end])]
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
    """Consecutive groups of a stream, their row groups decoded; iterating makes the Groups.

    Decoding happens where the chunk is loaded, on a prefetch thread. Checking each group's
    rows against the key runs of its row group (a dict lookup) and making its Group happen
    as the consumer reaches it, in one pass: few Groups are alive at a time, and a damaged
    index raises at the group it names.
    """

    def __init__(self, ds: GroupedDataset, columns: list[str], keys: list[Any],
                 where: dict[str, list[int]], runs: list[_RunBatch],
                 others: list[Group | None]) -> None:
        # where[name][i] for group i: which (its entry in runs, -1: in others), lo (first
        # row in that row group), count, nbytes, nwords, shard, first (row in the shard)
        self._ds, self._columns, self._keys, self._where = ds, columns, keys, where
        self._runs, self._others = runs, others
        self._block: DictBlock | None = None
        if runs and columns == ds._columns:  # dicts of all columns: what __iter__ yields
            mine = [i for i, k in enumerate(where["which"]) if k >= 0]
            self._block = DictBlock([r.batch for r in runs],
                                    *([where[n][i] for i in mine]
                                      for n in ("which", "lo", "count")))

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[Group]:
        ds, columns, runs, block = self._ds, self._columns, self._runs, self._block
        schema, names, shards = ds.schema, ds._columns, ds._shards
        w = self._where
        slot = 0
        for key, k, x, n, nb, nw, sh, fr, other in zip(
                self._keys, w["which"], w["lo"], w["count"], w["nbytes"], w["nwords"],
                w["shard"], w["first"], self._others):
            if k < 0:
                yield other
                continue
            rows = runs[k]
            if rows.runs.get(x) != (x + n, key):  # exactly one run of its key, as always
                raise CorruptDatasetError(
                    f"{shards.get(sh).path}: rows {fr}..{fr + n} should hold exactly group "
                    f"{key!r}; the index and shard disagree — rebuild the dataset")
            yield Group._loaded(key, _tuple_new(Part, (sh, fr, n)), nb, nw, shards, schema,
                                names, (rows.batch, x, n), columns, block, slot)
            slot += 1


def load_chunk(ds: GroupedDataset, ids: np.ndarray, columns: list[str],
               preload_bytes: int, *, reverse: bool = False) -> Chunk:
    """The groups ``ids`` (in this order), small ones decoded per row group."""
    a = ds._a
    keys = ds._keys_of(ids)
    part0 = a.starts[ids]
    nbytes = a.bytes[ids]
    shard, first, count = a.part_shard[part0], a.part_first[part0], a.part_rows[part0]
    eligible = (a.stops[ids] - part0 == 1) & (nbytes <= preload_bytes)
    rg, lo = _locate(ds, shard, first, count, eligible)
    # decode each row group the chunk touches once; which[i]: group i's entry in runs
    which = np.full(len(ids), -1, np.int64)
    blocked = rg >= 0
    runs: list[_RunBatch] = []
    if blocked.any():
        uniq, which[blocked] = np.unique((shard[blocked] << 32) + rg[blocked],
                                         return_inverse=True)
        cols = tuple(columns)
        todo = uniq.tolist()
        if reverse:  # decode in the other order than the neighbouring chunks (see stream.py)
            todo.reverse()
        got = {c: ds._shards.run_batch(c >> 32, c & 0xFFFFFFFF, cols) for c in todo}
        runs = [got[c] for c in uniq.tolist()]
    others: list[Group | None] = [None] * len(ids)
    for i in np.flatnonzero(~blocked).tolist():  # several parts or row groups, or big
        g = others[i] = ds._group_at(int(ids[i]), keys[i])
        if nbytes[i] <= preload_bytes:
            g._preload(columns)  # the per-group path (checked as it reads)
    where = {"which": which, "lo": lo, "count": count, "nbytes": nbytes,
             "nwords": a.words[ids], "shard": shard, "first": first}
    return Chunk(ds, columns, keys, {n: v.tolist() for n, v in where.items()}, runs, others)
