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


def check_is_dataset(path: str, name: str) -> None:
    """A local folder without a manifest is no grouped dataset: say so, and how to make one."""
    import os

    from fedgroups.format.layout import manifest_path

    if "://" in path:
        return
    if not os.path.exists(path):
        raise ConfigError(f"{name}.path {path!r}: no such folder; build a grouped dataset "
                          f"there first (fedgroups build SOURCE {path} --key KEYSPEC)")
    if os.path.isdir(path) and not os.path.exists(manifest_path(path)):
        raise ConfigError(
            f"{name}.path {path!r} is not a fedgroups dataset (it has no manifest.json); "
            f"make one with: fedgroups build SOURCE {path} --key KEYSPEC (or, if a build "
            "there was interrupted, run that build again)")


def open_source(config: DatasetConfig, name: str) -> GroupSource:
    if open_dataset is _REAL_OPEN:
        check_is_dataset(config.path, name)
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


_REAL_OPEN = open_dataset
