"""PyTorch: an ``IterableDataset`` of groups (or per-group batches).

Work is split by (rank, DataLoader worker) slots with :meth:`GroupedDataset.groups`, so
across ``world_size`` ranks × ``num_workers`` workers every group is read exactly once per
epoch. Use ``DataLoader(dataset, batch_size=None, num_workers=...)``: items are already
grouped, and torch must not collate them again. Call ``set_epoch(e)`` before each epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from fedgroups.adapters.numpy import column_to_numpy
from fedgroups.errors import SettingError
from fedgroups.reader.dataset import Group, GroupedDataset

Output = Literal["groups", "batches"]


def batch_to_torch(batch: pa.RecordBatch | pa.Table) -> dict[str, Any]:
    """Numeric columns as tensors (copied: Arrow memory is read-only), others as lists."""
    out: dict[str, Any] = {}
    for i, name in enumerate(batch.schema.names):
        col = batch.column(i)
        t = col.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            out[name] = torch.from_numpy(np.array(column_to_numpy(col)))
        else:
            out[name] = col.to_pylist()
    return out


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GroupStreamDataset(IterableDataset):
    """Groups of a :class:`GroupedDataset` for a torch ``DataLoader``.

    Parameters
    ----------
    dataset : an open dataset (or a view, e.g. from ``split_groups``).
    output : ``"groups"`` yields one dict per group (``key``, ``num_examples`` and the
        whole group's columns); ``"batches"`` yields dicts of at most ``batch_size`` rows,
        each with its group's ``key`` — groups larger than RAM stay streamed.
    transform : optional ``Group -> item``, run in the worker (e.g. tokenize and pack a
        client's examples); replaces ``output``.
    rank, world_size : default to torch.distributed's when it is initialized, else 0, 1.
    stream : further arguments of :meth:`GroupedDataset.groups` (seed, buffer_size,
        min_examples, keys, ...).

    Examples
    --------
    >>> loader = DataLoader(GroupStreamDataset(ds, output="batches", batch_size=32),
    ...                     batch_size=None, num_workers=2)  # doctest: +SKIP
    """

    def __init__(self, dataset: GroupedDataset, *, output: Output = "batches",
                 batch_size: int = 1024, columns: Sequence[str] | None = None,
                 transform: Callable[[Group], Any] | None = None, shuffle: bool = True,
                 seed: int = 0, epoch: int = 0, rank: int | None = None,
                 world_size: int | None = None, **stream: Any) -> None:
        super().__init__()
        if output not in ("groups", "batches"):
            raise SettingError(f"output {output!r} is not one of: groups, batches")
        for name in ("rank", "world_size", "worker", "num_workers", "state"):
            if name in stream:
                raise SettingError(f"{name} is set by the DataLoader/torch.distributed, "
                                   "not passed through")
        self.dataset = dataset
        self.output = output
        self.batch_size = batch_size
        self.columns = list(columns) if columns is not None else None
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.stream = stream

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def slot(self) -> dict[str, int]:
        """This process's (rank, world_size, worker, num_workers)."""
        rank, world = _rank_and_world()
        rank = rank if self.rank is None else self.rank
        world = world if self.world_size is None else self.world_size
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return {"rank": rank, "world_size": world, "worker": worker, "num_workers": num_workers}

    def __iter__(self) -> Iterator[Any]:
        groups = self.dataset.groups(shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                                     columns=self.columns, **self.slot(), **self.stream)
        for g in groups:
            if self.transform is not None:
                yield self.transform(g)
            elif self.output == "groups":
                yield {"key": g.key, "num_examples": g.num_examples,
                       **batch_to_torch(g.to_arrow(self.columns))}
            else:
                for b in g.batches(self.batch_size, self.columns):
                    yield {"key": g.key, **batch_to_torch(b)}
