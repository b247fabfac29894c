"""Group: one group's key, sizes, and lazy access to its rows as Arrow or Python dicts.

A group reads its rows when asked, row group by row group, so a group larger than RAM
streams in bounded memory. Groups handed out by a stream may arrive already read (see
:mod:`fedgroups.reader.chunks`): then ``batches`` and ``__iter__`` serve that data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from fedgroups.format.rows import to_dicts
from fedgroups.reader.shards import ShardCache
from fedgroups.reader.split import split_rows

Key = str | bytes | int
_new = object.__new__  # bound once: Group.make runs for every streamed group


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


@dataclass(frozen=True)
class GroupFiles:
    """What a group reads its rows with: the dataset's schema and column names (without
    the key column) and its shard files. One per dataset, shared by all its groups."""

    schema: pa.Schema
    columns: list[str]
    shards: ShardCache


class Subset(NamedTuple):
    """Some of a group's examples (made by :meth:`Group.split_examples`)."""

    rows: np.ndarray  # sorted positions inside the group
    total_bytes: int  # the whole group's sizes, for estimating the subset's
    total_words: int


def _concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    if hasattr(pa, "concat_batches"):
        return pa.concat_batches(batches)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class Group:
    """One group: its key, its sizes, and lazy access to its examples.

    A split part of a group (:meth:`split_examples`) holds some of its examples; its sizes
    in bytes and words are then estimated in proportion. Groups come from a dataset
    (``ds[key]``, ``ds.groups()``); they are made by :meth:`make`.
    """

    # slots: a stream makes tens of thousands of groups a second (cheaper to make, and
    # no per-group dict for the garbage collector to walk)
    __slots__ = ("_chunk", "_files", "_lo", "_parts", "_preloaded", "_preloaded_cols",
                 "_ready", "_rg", "_slot", "_subset", "key", "num_bytes", "num_examples",
                 "num_words")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a Group comes from its dataset (ds[key], ds.groups(), ...); the "
                        "reader makes one with Group.make")

    @classmethod
    def make(cls, key: Key, num_examples: int, num_bytes: int, num_words: int,
             files: GroupFiles, batch_columns: list[str] | None = None,
             row_group: pa.RecordBatch | None = None, first: int = 0,
             chunk: StreamChunk | None = None, slot: int = 0,
             ready: list[list[dict[str, Any]]] | None = None,
             parts: list[Part] | None = None, subset: Subset | None = None,
             batches: list[pa.RecordBatch] | None = None) -> Group:
        """The one way to make a Group (the Store, a stream's chunks and
        :meth:`split_examples` call it). It only stores its arguments: a stream makes
        tens of thousands of groups a second and passes the first eleven by position (a
        class call to ``__init__`` costs twice the instructions, and keyword-only parameters
        would keep Python 3.11 from specialising the call: ~440 more per group). Where the
        rows are:

        * ``parts`` of the shards in ``files``, read lazily when asked for (``subset``:
          only some of the group's examples);
        * ``batches``: the rows (``batch_columns`` of them), read already;
        * a streamed group: rows ``first:first+num_examples`` of the decoded ``row_group``
          (``batch_columns`` of them); the group is the ``slot``-th of ``chunk``, which
          knows its part (``parts`` is None) and may hold its rows as dicts; ``ready``:
          those dicts, made with the group.
        """
        g = _new(cls)
        g.key = key
        g.num_examples = num_examples
        g.num_bytes = num_bytes
        g.num_words = num_words
        g._files = files
        g._preloaded_cols = batch_columns
        g._rg = row_group
        g._lo = first
        g._chunk = chunk
        g._slot = slot
        g._ready = ready
        g._parts = parts
        g._subset = subset
        g._preloaded = batches
        return g

    @property
    def schema(self) -> pa.Schema:
        """The examples' columns (without the group key column)."""
        return self._files.schema

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
        every = self._files.columns
        cols = list(columns) if columns is not None else every
        for name in cols:
            if name not in every:
                raise KeyError(f"no column {name!r}; columns are {every}")
        return cols

    def _read(self, cols: list[str]) -> Iterator[pa.RecordBatch]:
        shards = self._files.shards
        for p in self.parts:
            yield from shards.read_group_rows(p.shard, p.first_row, p.num_rows, cols, self.key)

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
        if self._subset is None:
            yield from source
            return
        rows = self._subset.rows
        offset = 0
        for b in source:
            lo, hi = np.searchsorted(rows, [offset, offset + b.num_rows])
            if hi > lo:
                yield b.take(pa.array(rows[lo:hi] - offset))
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
        if (rg is not None and self.num_examples <= batch_size and self._subset is None
                and self._preloaded_cols == (self._files.columns if columns is None
                                             else columns)):
            return iter((rg.slice(self._lo, self.num_examples),))  # streamed: zero-copy
        pre = self._pre()
        if (pre is not None and len(pre) == 1 and self._subset is None
                and pre[0].num_rows <= batch_size
                and (self._preloaded_cols == self._files.columns if columns is None
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
        sub = self._subset
        if sub is None:  # the whole group
            sub = Subset(np.arange(self.num_examples), self.num_bytes, self.num_words)
        total = sum(p.num_rows for p in self.parts)  # the whole group's examples
        out = {}
        for name, pos in split_rows(self.num_examples, fractions, seed, salt).items():
            n = len(pos)
            share = n / total if total else 0.0
            out[name] = Group.make(
                self.key, n, round(sub.total_bytes * share), round(sub.total_words * share),
                self._files, self._preloaded_cols, parts=self.parts,
                subset=Subset(sub.rows[pos], sub.total_bytes, sub.total_words),
                batches=self._pre())
        return out
