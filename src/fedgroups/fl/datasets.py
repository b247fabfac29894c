"""Opening the grouped datasets a run names: split by groups, filter keys by globs.

The simulator needs only a small part of the reader's API: ``ds.keys()``,
``ds.group(key)`` (an object with ``.key``, ``.num_examples`` and iteration over example
dicts or ``.batches(...)``) and ``ds.split_groups(fractions=..., seed=...)``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Protocol

from fedgroups.fl.config import DatasetConfig
from fedgroups.fl.errors import ConfigError


class GroupLike(Protocol):
    key: Any
    num_examples: int

    def __iter__(self) -> Any: ...


class DatasetLike(Protocol):
    def keys(self) -> Any: ...

    def group(self, key: Any) -> GroupLike: ...


@dataclass(frozen=True)
class GroupSource:
    """A dataset plus the sorted keys of the groups a run may use from it."""

    dataset: DatasetLike
    keys: tuple[Any, ...]
    name: str
    index_sha256: str | None = None  # the manifest's digest of the group index: its identity

    def group(self, key: Any) -> GroupLike:
        return self.dataset.group(key)


def open_dataset(path: str) -> DatasetLike:
    """``fedgroups.open(path)``."""
    from fedgroups.reader.dataset import open as open_grouped

    return open_grouped(path)


def open_source(config: DatasetConfig, name: str) -> GroupSource:
    ds = open_dataset(config.path)
    manifest = getattr(ds, "manifest", None)
    digest = manifest.get("index", {}).get("sha256") if isinstance(manifest, dict) else None
    keys = sorted(ds.keys())
    where = f"dataset {config.path!r}"
    if config.split is not None:
        parts = ds.split_groups(fractions=dict(config.split), seed=config.split_seed)
        ds = parts[config.use_split]
        keys = sorted(ds.keys())
        where += f", part {config.use_split!r} of {name}.split"
        if not keys:
            raise ConfigError(f"{name}: {where} has no groups; change {name}.split")
    if config.keys is not None:
        total = len(keys)
        keys = [k for k in keys if any(fnmatch.fnmatchcase(str(k), g) for g in config.keys)]
        if not keys:
            raise ConfigError(f"{name}: {name}.keys {list(config.keys)} match none of the "
                              f"{total} groups of {where}")
    if not keys:
        raise ConfigError(f"{name}: {where} has no groups")
    return GroupSource(dataset=ds, keys=tuple(keys), name=name, index_sha256=digest)
