"""GroupedDataset: the reading side of the format, by key or by position, and streams.

A GroupedDataset is a :class:`~fedgroups.reader.store.Store` (the files) plus the ids of
the groups it holds (all of them, or a view's). Everything below it — streams, chunks,
read-ahead — takes the Store, never the dataset.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.reader.group import Group, Key
from fedgroups.reader.split import split_ids
from fedgroups.reader.store import Store
from fedgroups.reader.stream import (
    GroupStream,
    StreamSettings,
    check_state,
    order_for,
    selection_digest,
)

__all__ = ["Group", "GroupedDataset", "Key", "open"]


class GroupedDataset:
    """A grouped dataset on disk (or a view of some of its groups)."""

    def __init__(self, store: Store, group_ids: np.ndarray | None = None) -> None:
        """The groups ``group_ids`` (sorted; None: all) of ``store``; see :func:`open`."""
        self.store = store
        self.root: str = store.root
        self.manifest: dict[str, Any] = store.manifest
        self.index: pa.Table = store.index
        self.schema: pa.Schema = store.schema
        self._ids = np.arange(store.num_groups, dtype=np.int64) if group_ids is None \
            else group_ids

    # ---- sizes -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def num_examples(self) -> int:
        if len(self._ids) == self.store.num_groups:
            return self.store.num_examples
        return int(self.group_sizes().sum())

    def group_sizes(self) -> np.ndarray:
        """Examples per group, in key order (aligned with ``keys()``)."""
        return self.store.arrays.sizes[self._ids]

    def keys(self) -> list[Key]:
        """Group keys in sorted order."""
        return self.store.keys(self._ids)

    @property
    def group_columns(self) -> tuple[str, ...]:
        """Columns recorded per group at build time (``--group-columns``); () if none."""
        return tuple(self.manifest.get("group_columns", ()))

    def group_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """``key`` plus group columns, one row per group in ``keys()`` order (index only)."""
        from fedgroups.format.group_columns import group_table
        return group_table(self.index, self.store.arrays.starts[self._ids],
                           self.group_columns, columns)

    def __repr__(self) -> str:
        return (f"GroupedDataset({self.root!r}, groups={len(self)}, "
                f"examples={self.num_examples}, key={self.manifest['key'].get('spec')!r})")

    # ---- random access ---------------------------------------------------------------
    def _in_view(self, gid: int) -> bool:
        if len(self._ids) == self.store.num_groups:
            return True
        pos = int(np.searchsorted(self._ids, gid))
        return pos < len(self._ids) and int(self._ids[pos]) == gid

    def group(self, key: Key) -> Group:
        """The group with this key; KeyError (with close matches) if there is none."""
        gid = self.store.find(key)
        if gid is None or not self._in_view(gid):
            raise KeyError(f"no group {key!r} in {self.root}{self._hint(key)}")
        return self.store.group(gid)

    def _hint(self, key: Key) -> str:
        if not isinstance(key, str):
            return ""
        near = [k for k in self.store.keys(self._ids[self.store.arrays.near(key, self._ids)])
                if isinstance(k, str)]
        close = difflib.get_close_matches(key, near, n=3)
        return f"; did you mean {', '.join(map(repr, close))}?" if close else ""

    def __getitem__(self, key: Key) -> Group:
        return self.group(key)

    def __contains__(self, key: Key) -> bool:
        gid = self.store.find(key)
        return gid is not None and self._in_view(gid)

    def group_at(self, position: int) -> Group:
        """The ``position``-th group in key order (of this view)."""
        if not 0 <= position < len(self._ids):
            raise IndexError(f"group position {position} out of range 0..{len(self._ids) - 1}")
        return self.store.group(int(self._ids[position]))

    def _ids_of(self, keys: Sequence[Key]) -> np.ndarray:
        ids = []
        for k in keys:
            gid = self.store.find(k)
            if gid is None or not self._in_view(gid):
                raise KeyError(f"no group {k!r} in {self.root}{self._hint(k)}")
            ids.append(gid)
        return np.unique(np.asarray(ids, dtype=np.int64))

    def subset(self, keys: Sequence[Key]) -> GroupedDataset:
        """A view holding only the given groups (KeyError names the first one missing)."""
        return self._view(self._ids_of(keys))

    def _view(self, ids: np.ndarray) -> GroupedDataset:
        return GroupedDataset(self.store, ids)

    def __iter__(self) -> Iterator[Group]:
        for gid in self._ids:
            yield self.store.group(int(gid))

    # ---- streams and splits ----------------------------------------------------------
    def _select(self, min_examples: int | None, max_examples: int | None,
                keys: Sequence[Key] | None) -> np.ndarray:
        ids = self._ids if keys is None else self._ids_of(keys)
        sizes = self.store.arrays.sizes[ids]
        keep = np.ones(len(ids), dtype=bool)
        if min_examples is not None:
            keep &= sizes >= min_examples
        if max_examples is not None:
            keep &= sizes <= max_examples
        if min_examples is not None and max_examples is not None and min_examples > max_examples:
            raise SettingError(f"min_examples {min_examples} > max_examples {max_examples}")
        return ids[keep]

    def groups(self, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, rank: int = 0,
               world_size: int = 1, worker: int = 0, num_workers: int = 1,
               buffer_size: int = 16_384, block_bytes: int = 1 << 20, prefetch: int = 64,
               num_threads: int = 2, min_examples: int | None = None,
               max_examples: int | None = None, keys: Sequence[Key] | None = None,
               columns: Sequence[str] | None = None, state: dict[str, Any] | None = None,
               ) -> GroupStream:
        """One epoch of groups for one (rank, worker) slot: a resumable :class:`GroupStream`.

        The order is a pure function of (seed, epoch) and the settings: blocks of groups
        that are neighbours on disk are permuted, split into one contiguous run per slot
        (``world_size * num_workers`` slots, rank-major), and shuffled within windows of
        ``buffer_size`` groups. Over all slots every selected group appears exactly once.
        ``min_examples``/``max_examples`` keep only groups of that many examples (bounds
        included); ``keys`` keeps only those groups. The row groups that groups up to 8 MiB
        lie in are decoded ahead of the caller, in the order it will need them, by Arrow's
        thread pool (``num_threads`` row groups at a time; ``prefetch`` or ``num_threads``
        0: each when first needed, in the caller's thread), at least ``prefetch`` (and
        4096) groups and one shuffle window ahead while that holds under 128 MiB; larger groups stay
        lazy and are read one row group at a time as the caller iterates.
        Pass ``state=it.state_dict()`` (and the same settings) to resume.
        """
        settings = StreamSettings(shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                                  world_size=world_size, worker=worker,
                                  num_workers=num_workers, buffer_size=buffer_size,
                                  block_bytes=block_bytes)
        ids = self._select(min_examples, max_examples, keys)
        selection = selection_digest(self.store.index_sha256, ids)
        position = 0 if state is None else check_state(state, settings, selection)
        return GroupStream(self.store, order_for(self.store, ids, settings), settings, selection,
                           position=position, prefetch=prefetch, num_threads=num_threads,
                           columns=columns)

    def split_groups(self, fractions: Mapping[str, float], *, seed: int = 0,
                     ) -> dict[str, GroupedDataset]:
        """Split by group into named views, e.g. ``{"train": 0.9, "test": 0.1}``.

        Deterministic in (seed, this view's groups); counts are exact (cumulative
        rounding), and fractions summing below 1 leave the rest out.
        """
        return {name: self._view(ids) for name, ids in split_ids(self._ids, fractions,
                                                                  seed).items()}

    def to_hf(self, keys: Sequence[Key] | None = None, columns: Sequence[str] | None = None,
              ) -> Any:
        """The groups ``keys`` (default: all of this view) as one ``datasets.Dataset``,
        in memory, the key in column ``__group__`` (see :mod:`fedgroups.adapters.hf`)."""
        from fedgroups.adapters.hf import groups_to_hf
        return groups_to_hf(self, keys, columns)


def open(path: str | os.PathLike[str]) -> GroupedDataset:
    """Open a grouped dataset written by ``fg.build`` (no code from the dataset is run)."""
    return GroupedDataset(Store.open(path))
