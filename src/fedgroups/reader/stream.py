"""Group streams: one epoch of one slot's groups, prefetched, resumable from a small dict.

A stream's order is computed by :mod:`fedgroups.reader.order` from the settings alone, so
its state is the settings plus ``position`` (groups handed out so far). Resuming from
``state_dict()`` skips that many entries of the same order: exactly the rest of the
uninterrupted stream. A stream reads through the dataset's
:class:`~fedgroups.reader.store.Store`, in chunks (:mod:`fedgroups.reader.chunks`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedgroups.errors import SettingError
from fedgroups.reader.chunks import Chunk, plan_chunk
from fedgroups.reader.group import Group
from fedgroups.reader.order import slot_order
from fedgroups.reader.readahead import RowGroupFeed
from fedgroups.reader.store import Store

STATE_VERSION = 1
# Groups up to this size are served from row groups decoded ahead (see readahead.py);
# larger ones stay lazy, so a group larger than RAM is read one row group at a time.
PRELOAD_BYTES = 8 << 20
# The order is planned in chunks of consecutive groups (see chunks.py): up to this many
# groups, or this many bytes of small groups; the first chunks are shorter.
CHUNK_GROUPS = 1024
CHUNK_BYTES = 8 << 20
FIRST_CHUNK_GROUPS = 32
# With threads, chunks are planned (their row groups queued for decoding) ahead of the
# consumer while the row groups they hold stay under this many bytes (and MAX_PLANNED
# chunks), up to PLAN_PER_CHUNK chunks each time it finishes one.
PLAN_AHEAD_BYTES = 128 << 20
MAX_PLANNED = 64
PLAN_PER_CHUNK = 4
# At least this many groups ahead whatever ``prefetch`` says: unshuffled, 64 groups of 10
# examples are about a row group, and the decoder, told of one row group at a time, fell
# behind the consumer (benchmarks/read.py's 10-example dataset unshuffled: 4096 ahead took
# a quarter less wall time than 64, median of 11 interleaved rounds).
MIN_LOOKAHEAD = 4096


@dataclass(frozen=True, kw_only=True)
class StreamSettings:
    """Everything the order depends on (besides the dataset and the selected groups)."""

    shuffle: bool = True
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1
    buffer_size: int = 16_384
    block_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("seed", "epoch", "rank", "worker", "world_size", "num_workers",
                     "buffer_size", "block_bytes"):
            v = getattr(self, name)
            if isinstance(v, np.integer):  # keep state_dict() plain JSON
                object.__setattr__(self, name, int(v))
        object.__setattr__(self, "shuffle", bool(self.shuffle))
        for name in ("seed", "epoch", "rank", "worker"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise SettingError(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("world_size", "num_workers", "buffer_size", "block_bytes"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise SettingError(f"{name} must be a positive integer, got {v!r}")
        if self.rank >= self.world_size:
            raise SettingError(f"rank {self.rank} is not below world_size {self.world_size}")
        if self.worker >= self.num_workers:
            raise SettingError(f"worker {self.worker} is not below num_workers "
                               f"{self.num_workers}")

    @property
    def slot(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def num_slots(self) -> int:
        return self.world_size * self.num_workers


def selection_digest(dataset_sha: str, ids: np.ndarray) -> str:
    """Short fingerprint of (dataset index, selected groups): a state resumes only on them."""
    h = hashlib.sha256(dataset_sha.encode())
    h.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def order_for(store: Store, ids: np.ndarray, s: StreamSettings) -> np.ndarray:
    """The group ids this stream visits, in order."""
    a = store.arrays
    return slot_order(ids, a.location[ids], a.bytes[ids], shuffle=s.shuffle, seed=int(s.seed),
                      epoch=int(s.epoch), slot=s.slot, num_slots=s.num_slots,
                      buffer_size=int(s.buffer_size), block_bytes=int(s.block_bytes))


def check_state(state: dict[str, Any], settings: StreamSettings, selection: str) -> int:
    """The position to resume at; SettingError if ``state`` belongs to another stream."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise SettingError(f"not a fedgroups stream state (version {STATE_VERSION}): {state!r}")
    expected = {**asdict(settings), "selection": selection}
    diff = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: state has {a!r}, call has {b!r}" for k, (a, b) in diff.items())
        raise SettingError(f"the state belongs to a different stream ({detail}); pass the same "
                           "settings and groups as the stream that produced it")
    position = state.get("position")
    if not isinstance(position, int) or position < 0:
        raise SettingError(f"state position must be a non-negative integer, got {position!r}")
    return position


def chunk_ranges(num_bytes: np.ndarray, max_groups: int, max_bytes: int,
                 preload_bytes: int, first_groups: int = FIRST_CHUNK_GROUPS,
                 ) -> Iterator[tuple[int, int]]:
    """Consecutive [lo, hi) ranges covering ``num_bytes``: each at most ``max_groups``
    groups and, unless one group alone exceeds it, ``max_bytes`` of preloaded rows (groups
    above ``preload_bytes`` are not preloaded and count as 1 byte).

    The first ranges are short (``first_groups``, doubling up to ``max_groups``): a
    shuffled chunk touches many row groups, and the consumer should not wait for all of
    them before its first group, nor the threads for one another.
    """
    weight = np.where(num_bytes > preload_bytes, 1, np.maximum(num_bytes, 1))
    cum = np.cumsum(weight)
    lo, n, size = 0, len(num_bytes), max(1, min(first_groups, max_groups))
    while lo < n:
        base = int(cum[lo - 1]) if lo else 0
        hi = min(lo + size, int(np.searchsorted(cum, base + max_bytes, side="right")))
        hi = max(hi, lo + 1)
        yield lo, hi
        lo, size = hi, min(2 * size, max_groups)


class GroupStream:
    """Iterator over one epoch of groups for one (rank, worker) slot.

    ``state_dict()`` is a small JSON-able dict; ``ds.groups(..., state=state)`` with the
    same settings continues right after the last group this iterator handed out.
    """

    def __init__(self, store: Store, order: np.ndarray, settings: StreamSettings,
                 selection: str, *, position: int = 0, prefetch: int = 64,
                 num_threads: int = 2, columns: list[str] | None = None) -> None:
        if position > len(order):
            raise SettingError(f"state position {position} is past the end of this stream "
                               f"({len(order)} groups)")
        self.settings = settings
        self.order = order
        self._base = position  # groups handed out before the chunk being handed out
        self._chunk: Chunk | None = None  # that chunk (it counts what it handed out)
        self._selection = selection
        self._store = store
        self._columns = store.check_columns(columns)
        if prefetch < 0 or num_threads < 0:
            raise SettingError(f"prefetch and num_threads must be >= 0, got {prefetch} and "
                               f"{num_threads}")
        rest = order[position:]
        chunks = chunk_ranges(store.arrays.bytes[rest], CHUNK_GROUPS, CHUNK_BYTES,
                              PRELOAD_BYTES)
        threads = num_threads if prefetch else 0
        # a shuffle window's groups share row groups, so the consumer needs all of a
        # window's row groups early and then none for a while: look a window ahead
        lookahead = max(prefetch, MIN_LOOKAHEAD, settings.buffer_size if settings.shuffle else 0)
        # the groups of one chunk after another: chain calls each chunk's iterator from C,
        # and _chunks (one Python frame more) only between chunks
        self._chunks_it = self._chunks(rest, chunks, lookahead, threads)
        self._it: Iterator[Group] = itertools.chain.from_iterable(self._chunks_it)

    def _chunks(self, rest: np.ndarray, chunks: Iterator[tuple[int, int]], lookahead: int,
                num_threads: int) -> Iterator[Chunk]:
        """Plan chunks (queue their row groups for decoding) up to ``lookahead`` groups
        ahead of the consumer, while the row groups they hold stay under PLAN_AHEAD_BYTES:
        all of that before the first group (the consumer would wait for the first shuffle
        window's row groups anyway, and the feed then knows how much of each row group the
        window uses: see RowGroupFeed.dicts), then a few chunks between the chunks it hands
        out. Without threads: one chunk at a time."""
        feed = RowGroupFeed(self._store, self._columns, read_ahead=num_threads)
        planned: deque[Chunk] = deque()
        ahead = 0  # groups in planned chunks
        budget = MAX_PLANNED  # at the start, as far as the limits allow (see above)
        try:
            while True:
                while not planned or num_threads and budget > 0 and ahead < lookahead and (
                        feed.held_bytes < PLAN_AHEAD_BYTES and len(planned) < MAX_PLANNED):
                    span = next(chunks, None)
                    if span is None:
                        break
                    planned.append(plan_chunk(self._store, rest[span[0]:span[1]],
                                              self._columns, PRELOAD_BYTES, feed))
                    ahead += span[1] - span[0]
                    budget -= 1
                if not planned:
                    return
                chunk = planned.popleft()
                ahead -= len(chunk)
                self._chunk = chunk
                yield chunk  # it counts each group before handing it out: see position
                self._base += len(chunk)
                self._chunk = None
                feed.release(chunk.codes, chunk.code_rows)
                chunk.finish()
                budget = PLAN_PER_CHUNK
        finally:
            planned.clear()
            feed.close()

    def __iter__(self) -> Iterator[Group]:
        return self._it  # a for loop then skips __next__ (a call per group)

    def __next__(self) -> Group:
        return next(self._it)

    def __len__(self) -> int:
        """Groups in this stream's epoch (handed out or not)."""
        return len(self.order)

    @property
    def position(self) -> int:
        """Groups handed out so far (counting the one the caller has now)."""
        chunk = self._chunk
        return self._base + (chunk.handed if chunk is not None else 0)

    @property
    def remaining(self) -> int:
        return len(self.order) - self.position

    def keys(self) -> list[Any]:
        """Keys in this stream's order, without reading any group."""
        return self._store.keys(self.order)

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self.settings),
                "selection": self._selection, "position": self.position}

    def close(self) -> None:
        self._chunks_it.close()

    def __repr__(self) -> str:
        s = self.settings
        return (f"GroupStream(epoch={s.epoch}, slot={s.slot}/{s.num_slots}, "
                f"position={self.position}/{len(self.order)})")
