"""PyTorch: an ``IterableDataset`` of groups (or per-group batches).

Work is split by (rank, DataLoader worker) slots with :meth:`GroupedDataset.groups`, so
across ``world_size`` ranks × ``num_workers`` workers every group is read exactly once per
epoch. Use ``DataLoader(dataset, batch_size=None, num_workers=...)``: items are already
grouped, and torch must not collate them again. Call ``set_epoch(e)`` before each epoch.

With workers, every item crosses a process boundary (each tensor through its own shared
memory segment, the rest pickled), which costs far more than reading a small group. So
``output="blocks"`` packs the rows of several groups into one item of ``batch_size`` rows,
with ``keys`` and ``offsets`` saying which rows belong to which group; and
``output="batches"`` with ``pack_rows`` packs whole per-group batches into items of up
to ``pack_rows`` rows, which :func:`unpack` turns back into the per-group batches in the
main process::

    data = GroupStreamDataset(ds, output="batches", batch_size=256, pack_rows=8192)
    for batch in unpack(DataLoader(data, batch_size=None, num_workers=4)):
        ...  # {"key": ..., column: tensor or list}, as without pack_rows
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate_fn_map

from fedgroups.adapters.numpy import column_to_numpy
from fedgroups.errors import SettingError
from fedgroups.format.rows import column_values
from fedgroups.reader.dataset import Group, GroupedDataset

Output = Literal["groups", "batches", "blocks"]
_PACKED = "packed_batches"  # marks an item of whole per-group batches (see unpack)


class GroupItem(dict):
    """An item of :class:`GroupStreamDataset`: already a batch of one group's rows (or a
    whole group, or a packed block), never one example. A plain ``dict`` otherwise; its type
    lets torch's default collation say what to do instead of failing to stack tensors of
    different lengths."""


def _refuse_collate(batch: list[Any], *, collate_fn_map: Any = None) -> Any:
    raise SettingError(
        f"a DataLoader with a batch_size tried to collate {len(batch)} GroupStreamDataset "
        "items into one: each item is already a batch of one group's rows (output='batches', "
        "its size set by GroupStreamDataset(batch_size=...)), a whole group or a packed "
        "block. Pass batch_size=None to the DataLoader; with num_workers, pack_rows=... "
        "and unpack() move fewer, larger items")


# torch's documented extension point of default_collate: an element type -> its collate.
default_collate_fn_map[GroupItem] = _refuse_collate


def _is_tensor_type(t: pa.DataType) -> bool:
    """Numbers, booleans, and fixed-size lists of them (``fixed_size_list<float32, 64>``
    becomes an ``(n, 64)`` tensor); variable-length lists are not: they stay lists."""
    if pa.types.is_fixed_size_list(t):
        return _is_tensor_type(t.value_type)
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def batch_to_torch(batch: pa.RecordBatch | pa.Table) -> dict[str, Any]:
    """Numeric columns, and fixed-size lists of numbers, as tensors (copied: Arrow memory
    is read-only); others as lists."""
    out: dict[str, Any] = {}
    for i, name in enumerate(batch.schema.names):
        col = batch.column(i)
        if _is_tensor_type(col.type):
            out[name] = torch.from_numpy(np.array(column_to_numpy(col)))
        else:
            out[name] = column_values(col)
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
        each with its group's ``key`` — groups larger than RAM stay streamed; ``"blocks"``
        yields dicts of ``batch_size`` rows (the last may be shorter) taken from
        consecutive groups of the stream: ``keys`` (one per group piece), ``offsets``
        (a LongTensor: piece ``i`` is rows ``offsets[i]:offsets[i+1]``; a group larger
        than ``batch_size`` continues in the next item) and the columns. Far fewer items
        than groups, so the fastest output with ``num_workers > 0``.
    pack_rows : with ``output="batches"``, yield items of whole per-group batches, up to
        this many rows each (a batch larger than it alone), for :func:`unpack` to split in
        the main process: far fewer items to cross from the workers.
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
                 pack_rows: int | None = None,
                 transform: Callable[[Group], Any] | None = None, shuffle: bool = True,
                 seed: int = 0, epoch: int = 0, rank: int | None = None,
                 world_size: int | None = None, **stream: Any) -> None:
        super().__init__()
        if output not in ("groups", "batches", "blocks"):
            raise SettingError(f"output {output!r} is not one of: groups, batches, blocks")
        if batch_size < 1:
            raise SettingError(f"batch_size must be positive, got {batch_size}")
        if pack_rows is not None and (output != "batches" or transform is not None
                                      or pack_rows < 1):
            raise SettingError(f"pack_rows={pack_rows!r} needs output='batches', no "
                               "transform, and a positive number of rows")
        for name in ("rank", "world_size", "worker", "num_workers", "state"):
            if name in stream:
                raise SettingError(f"{name} is set by the DataLoader/torch.distributed, "
                                   "not passed through")
        self.dataset = dataset
        self.output = output
        self.batch_size = batch_size
        self.columns = list(columns) if columns is not None else None
        self.pack_rows = pack_rows
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
        slot = self.slot()
        stream = dict(self.stream)
        if slot["num_workers"] > 1:  # the workers already use the cores
            stream.setdefault("num_threads", 1)
        groups = self.dataset.groups(shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                                     columns=self.columns, **slot, **stream)
        if (self.output == "blocks" or self.pack_rows) and self.transform is None:
            names = self.columns or self.dataset.schema.names
            clash = {"keys", "offsets", _PACKED} & set(names)
            if clash:
                raise SettingError(f"column {sorted(clash)[0]!r} clashes with the packed "
                                   "items' own fields; select columns= without it")
            if self.pack_rows:
                yield from _packs(groups, self.batch_size, self.pack_rows, self.columns)
            else:
                yield from _blocks(groups, self.batch_size, self.columns)
            return
        for g in groups:
            if self.transform is not None:
                yield self.transform(g)
            elif self.output == "groups":
                yield GroupItem({"key": g.key, "num_examples": g.num_examples,
                                 **batch_to_torch(g.to_arrow(self.columns))})
            else:
                for b in g.batches(self.batch_size, self.columns):
                    yield GroupItem({"key": g.key, **batch_to_torch(b)})


def _blocks(groups: Iterable[Group], batch_size: int, columns: list[str] | None,
            ) -> Iterator[dict[str, Any]]:
    """Items of ``batch_size`` rows from consecutive groups, with keys and offsets."""
    pending: list[pa.RecordBatch] = []
    keys: list[Any] = []
    held = 0
    for g in groups:
        for b in g.batches(batch_size, columns):
            while b.num_rows:
                take = min(batch_size - held, b.num_rows)
                pending.append(b.slice(0, take) if take < b.num_rows else b)
                keys.append(g.key)
                held += take
                b = b.slice(take)
                if held == batch_size:
                    yield _pack(pending, keys)
                    pending, keys, held = [], [], 0
    if held:
        yield _pack(pending, keys)


def _pack(pieces: list[pa.RecordBatch], keys: list[Any]) -> GroupItem:
    sizes = [p.num_rows for p in pieces]
    offsets = torch.zeros(len(sizes) + 1, dtype=torch.int64)
    torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0, out=offsets[1:])
    try:
        columns = batch_to_torch(pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # schemas differ (in metadata): piecewise
        parts = [batch_to_torch(p) for p in pieces]
        columns = {c: torch.cat([p[c] for p in parts]) if isinstance(parts[0][c], torch.Tensor)
                   else [v for p in parts for v in p[c]] for c in parts[0]}
    return GroupItem({"keys": keys, "offsets": offsets, **columns})


def _packs(groups: Iterable[Group], batch_size: int, pack_rows: int,
           columns: list[str] | None) -> Iterator[dict[str, Any]]:
    """Items of whole per-group batches (``Group.batches(batch_size)``), consecutive,
    up to ``pack_rows`` rows each; a batch that would not fit starts the next item."""
    pending: list[pa.RecordBatch] = []
    keys: list[Any] = []
    held = 0
    for g in groups:
        for b in g.batches(batch_size, columns):
            if held and held + b.num_rows > pack_rows:
                yield GroupItem({**_pack(pending, keys), _PACKED: True})
                pending, keys, held = [], [], 0
            pending.append(b)
            keys.append(g.key)
            held += b.num_rows
    if pending:
        yield GroupItem({**_pack(pending, keys), _PACKED: True})


def unpack(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The per-group batches packed by ``GroupStreamDataset(..., pack_rows=...)``, as
    ``{"key": ..., column: tensor (a view) or list}``, in the order packed; other items
    (e.g. from a dataset without ``pack_rows``) pass through unchanged."""
    for item in items:
        if not (isinstance(item, dict) and item.get(_PACKED)):
            yield item
            continue
        offsets = item["offsets"].tolist()
        names = [c for c in item if c not in ("keys", "offsets", _PACKED)]
        for key, lo, hi in zip(item["keys"], offsets, offsets[1:]):
            yield {"key": key, **{c: item[c][lo:hi] for c in names}}
