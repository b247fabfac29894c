"""Group: one group's key, sizes, and lazy access to its rows as Arrow or Python dicts.

A group reads its rows when asked, row group by row group, so a group larger than RAM
streams in bounded memory. Groups handed out by a stream may arrive already read (see
:mod:`fedgroups.reader.chunks`): then ``batches`` and ``__iter__`` serve that data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from fedgroups.format.rows import to_dicts
from fedgroups.reader.shards import ShardCache
from fedgroups.reader.split import split_rows

Key = str | bytes | int


class StreamChunk(Protocol):
    """The planned chunk a streamed group comes from (see chunks.py)."""

    def part(self, slot: int) -> tuple[int, int, int]:
        """Group ``slot``'s (shard, first row, rows)."""
        ...

    def take(self, slot: int) -> list[dict[str, Any]] | None:
        """Group ``slot``'s rows as dicts converted with others, once (else None)."""
        ...


class Part(NamedTuple):
    """One contiguous run of a group's rows in one shard."""

    shard: int
    first_row: int
    num_rows: int


def _concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    if hasattr(pa, "concat_batches"):
        return pa.concat_batches(batches)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class Group:
    """One group: its key, its sizes, and lazy access to its examples.

    ``rows`` (sorted positions inside the group) restricts the group to some of its
    examples, as made by :meth:`split_examples`; sizes in bytes and words are then
    estimated in proportion.
    """

    # slots: a stream makes tens of thousands of groups a second (cheaper to make, and
    # no per-group dict for the garbage collector to walk)
    __slots__ = ("_chunk", "_columns", "_lo", "_parts", "_preloaded", "_preloaded_cols",
                 "_ready", "_rg", "_rows", "_shards", "_slot", "_total_bytes", "_total_words",
                 "key", "num_bytes", "num_examples", "num_words", "schema")

    def __init__(self, key: Key, num_examples: int, num_bytes: int, num_words: int,
                 schema: pa.Schema, columns: list[str], shards: ShardCache,
                 parts: list[Part] | None = None, rows: np.ndarray | None = None,
                 total_bytes: int | None = None, total_words: int | None = None,
                 batches: list[pa.RecordBatch] | None = None,
                 batch_columns: list[str] | None = None,
                 row_group: pa.RecordBatch | None = None, first: int = 0,
                 chunk: StreamChunk | None = None, slot: int = 0,
                 ready: list[list[dict[str, Any]]] | None = None) -> None:
        """The one way to make a Group (the Store, a stream's chunks and
        :meth:`split_examples` call it). It computes nothing: a stream makes tens of
        thousands of groups a second, so they pass their arguments by position.

        ``columns`` is ``schema.names`` (shared, not copied per group). Where the rows are:

        * ``parts`` in ``shards`` (``rows``: only these positions inside the group, whose
          sizes without the restriction are ``total_bytes``/``total_words``), read lazily;
        * ``batches``: the rows (``batch_columns`` of them) read already;
        * a streamed group: rows ``first:first+num_examples`` of the decoded ``row_group``,
          the ``slot``-th group of ``chunk``, which knows its part (``parts`` is None) and
          may hold its rows as dicts; ``ready``: those dicts, made with the group.
        """
        self.key = key
        self.num_examples, self.num_bytes, self.num_words = num_examples, num_bytes, num_words
        self._total_bytes = num_bytes if total_bytes is None else total_bytes
        self._total_words = num_words if total_words is None else total_words
        self.schema, self._columns, self._shards = schema, columns, shards
        self._parts, self._rows = parts, rows
        self._preloaded, self._preloaded_cols = batches, batch_columns or []
        self._rg, self._lo = row_group, first
        self._chunk, self._slot, self._ready = chunk, slot, ready

    @property
    def parts(self) -> list[Part]:
        """Where the group's rows are: (shard, first row, rows) per part, in order."""
        p = self._parts
        if p is None:
            assert self._chunk is not None
            return [Part(*self._chunk.part(self._slot))]
        return p

    def _pre(self) -> list[pa.RecordBatch] | None:
        """The rows the stream read ahead (``_preloaded_cols`` of them), if any."""
        rg = self._rg
        if rg is not None:
            return [rg.slice(self._lo, self.num_examples)]  # zero-copy; not kept
        return self._preloaded

    def __repr__(self) -> str:
        return f"Group(key={self.key!r}, num_examples={self.num_examples})"

    def __len__(self) -> int:
        return self.num_examples

    def _check_columns(self, columns: Sequence[str] | None) -> list[str]:
        cols = list(columns) if columns is not None else self._columns
        for name in cols:
            if name not in self._columns:
                raise KeyError(f"no column {name!r}; columns are {self._columns}")
        return cols

    def _read(self, cols: list[str]) -> Iterator[pa.RecordBatch]:
        for p in self.parts:
            yield from self._shards.read_group_rows(p.shard, p.first_row, p.num_rows, cols,
                                                    self.key)

    def _batches(self, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        """The group's rows as zero-copy slices of its row groups, in order."""
        cols = self._check_columns(columns)
        pre = self._pre()
        if pre is not None and cols == self._preloaded_cols:
            source: Iterator[pa.RecordBatch] = iter(pre)
        elif pre is not None and set(cols) <= set(self._preloaded_cols):
            source = (b.select(cols) for b in pre)
        else:
            source = self._read(cols)
        if self._rows is None:
            yield from source
            return
        offset = 0
        for b in source:
            lo, hi = np.searchsorted(self._rows, [offset, offset + b.num_rows])
            if hi > lo:
                yield b.take(pa.array(self._rows[lo:hi] - offset))
            offset += b.num_rows

    def tables(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The group's rows as Arrow tables, one row group at a time (never the whole group)."""
        for b in self._batches(columns):
            yield pa.Table.from_batches([b])

    def batches(self, batch_size: int = 1024, columns: Sequence[str] | None = None,
                ) -> Iterator[pa.RecordBatch]:
        """Record batches of exactly ``batch_size`` rows (the last may be shorter)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rg = self._rg
        if (rg is not None and self.num_examples <= batch_size and self._rows is None
                and self._preloaded_cols == (self._columns if columns is None else columns)):
            return iter((rg.slice(self._lo, self.num_examples),))  # streamed: zero-copy
        pre = self._pre()
        if (pre is not None and len(pre) == 1 and self._rows is None
                and pre[0].num_rows <= batch_size
                and (self._preloaded_cols == self._columns if columns is None
                     else self._preloaded_cols == columns)):
            return iter(pre)  # fast path: a small group read whole by the stream
        return self._rebatch(batch_size, columns)

    def _rebatch(self, batch_size: int, columns: Sequence[str] | None,
                 ) -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in self._batches(columns):
            if not held and batch.num_rows < batch_size:  # common: a whole small group
                pending, held = [batch], batch.num_rows
                continue
            while batch.num_rows:
                take = min(batch_size - held, batch.num_rows)
                pending.append(batch.slice(0, take) if take < batch.num_rows else batch)
                held += take
                batch = batch.slice(take)
                if held == batch_size:
                    yield _concat_batches(pending)
                    pending, held = [], 0
        if held:
            yield _concat_batches(pending)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The group's examples as dicts (all columns), in stored order."""
        ready = self._ready
        if ready:  # made with the group (its stream is being iterated as dicts)
            try:
                return iter(ready.pop())  # atomic: a list is handed out once
            except IndexError:
                pass
        if self._chunk is not None:
            rows = self._chunk.take(self._slot)  # converted with other groups, handed out once
            if rows is not None:
                return iter(rows)
        return self._dicts()

    def _dicts(self) -> Iterator[dict[str, Any]]:
        for b in self._batches(None):
            yield from to_dicts(b)

    def to_hf(self, columns: Sequence[str] | None = None) -> Any:
        """The group's examples as a ``datasets.Dataset``, in memory (one client's data,
        as Flower Datasets hands it out; see :mod:`fedgroups.adapters.hf`)."""
        from fedgroups.adapters.hf import group_to_hf
        return group_to_hf(self, columns)

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole group in memory: only when the caller asks for it."""
        cols = self._check_columns(columns)
        batches = list(self._batches(cols))
        return pa.Table.from_batches(batches, pa.schema([self.schema.field(c) for c in cols]))

    def split_examples(self, fractions: Mapping[str, float], *, seed: int | None = None,
                       ) -> dict[str, Group]:
        """This group's examples split into named parts, e.g. for personalization.

        ``seed=None`` splits in stored order (``{"train": 0.8, "test": 0.2}`` fine-tunes on
        the first 80% and evaluates on the rest); an integer seed assigns examples by a
        permutation seeded by (seed, key). Each part is a lazy :class:`Group`.
        """
        salt = int.from_bytes(hashlib.blake2b(repr(self.key).encode(), digest_size=4).digest(),
                              "little")
        base = np.arange(self.num_examples) if self._rows is None else self._rows
        total = sum(p.num_rows for p in self.parts)  # the group's, without ``rows``
        out = {}
        for name, pos in split_rows(self.num_examples, fractions, seed, salt).items():
            n = len(pos)
            share = n / total if total else 0.0
            out[name] = Group(self.key, n, round(self._total_bytes * share),
                              round(self._total_words * share), self.schema, self._columns,
                              self._shards, parts=self.parts, rows=base[pos],
                              total_bytes=self._total_bytes, total_words=self._total_words,
                              batches=self._pre(), batch_columns=self._preloaded_cols)
        return out
