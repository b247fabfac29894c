"""Store: one dataset's files as the reader uses them — manifest, index, shards, schema.

The floor under :class:`~fedgroups.reader.dataset.GroupedDataset`. The stream machinery
(``stream.py``, ``chunks.py``, ``readahead.py``) and the adapters take a Store and use
only its public surface, so none of them imports ``dataset.py``. One Store is shared by
a dataset and all its views (a view is the Store plus some group ids).

Groups are numbered 0, 1, ... in key order; a *group id* is that number, the position of
the group's entries in :class:`~fedgroups.reader.index.IndexArrays`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.arrays import from_numpy
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.checks import as_read_from_parquet
from fedgroups.format.layout import leads_outside, manifest_path
from fedgroups.format.manifest import read_manifest, schema_from_json
from fedgroups.format.rows import column_values
from fedgroups.format.spec import KEY_COLUMN
from fedgroups.reader.group import Group, GroupFiles, Key, Part
from fedgroups.reader.index import IndexArrays, load_index
from fedgroups.reader.shards import ShardCache


class Store:
    """A dataset's manifest, index (as a table and as arrays), shard files and schema.

    ``schema`` and ``columns`` are the examples' columns (without the group key column);
    ``group_files`` is the three together, as every Group of the dataset reads its rows with
    them. Opening checks the manifest and the index (see :func:`Store.open`); shards are
    checked when first read.
    """

    def __init__(self, root: str, manifest: dict[str, Any], index: pa.Table,
                 arrays: IndexArrays | None = None, shards: ShardCache | None = None,
                 ) -> None:
        self.root = root
        self.manifest = manifest
        self.index = index
        self.arrays = arrays or IndexArrays.from_index(index)
        # the schema as the shards give it back (date64 is read as date32): what rows are
        full = as_read_from_parquet(schema_from_json(manifest["schema"]))
        self.shards = shards or ShardCache(root, manifest["shards"],
                                           build_id=manifest.get("build_id"), schema=full)
        self.schema: pa.Schema = pa.schema([f for f in full if f.name != KEY_COLUMN],
                                           metadata=full.metadata)
        self.columns: list[str] = self.schema.names
        self.group_files = GroupFiles(self.schema, self.columns, self.shards)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """The dataset at ``path``: its manifest read and its index loaded and checked (the
        only O(groups) work), its shards not yet opened."""
        root = os.path.abspath(os.fspath(path))
        _refuse_outside(root, os.path.relpath(manifest_path(root), root))
        manifest = read_manifest(root)
        _refuse_outside(root, manifest["index"]["path"])  # shards: when opened (shards.py)
        index = load_index(root, manifest)
        return cls(root, manifest, index,
                   IndexArrays.from_index(index, manifest=manifest, root=root))

    # ---- what the index says ---------------------------------------------------------
    @property
    def num_groups(self) -> int:
        return len(self.arrays.starts)

    @property
    def num_examples(self) -> int:
        """Examples in the whole dataset (the manifest's total)."""
        return int(self.manifest["totals"]["examples"])

    @property
    def index_sha256(self) -> str:
        """The index file's checksum: names this build's groups (stream states carry it)."""
        return str(self.manifest["index"]["sha256"])

    @property
    def key_spec(self) -> Any:
        return self.manifest["key"].get("spec")

    def keys(self, ids: np.ndarray) -> list[Key]:
        """The keys of groups ``ids``, in that order (converted in one call)."""
        return column_values(self.arrays.keys.take(from_numpy(np.asarray(ids, np.int64))))

    def find(self, key: Key) -> int | None:
        """The group id of ``key``, or None."""
        return self.arrays.find(key)

    def parts(self, gid: int) -> list[Part]:
        """Where group ``gid``'s rows are, part by part."""
        a = self.arrays
        return [Part(int(a.part_shard[i]), int(a.part_first[i]), int(a.part_rows[i]))
                for i in range(a.starts[gid], a.stops[gid])]

    def check_columns(self, columns: Sequence[str] | None) -> list[str]:
        """``columns`` as a list (None: every column); KeyError naming one that is not
        there."""
        cols = list(columns) if columns is not None else list(self.columns)
        missing = [c for c in cols if c not in self.columns]
        if missing:
            raise KeyError(f"no column {missing[0]!r}; columns are {self.columns}")
        return cols

    # ---- rows ------------------------------------------------------------------------
    def group(self, gid: int, key: Key | None = None, *,
              batches: list[pa.RecordBatch] | None = None,
              batch_columns: list[str] | None = None) -> Group:
        """Group ``gid`` (``key``: its key, if the caller has it already), reading its rows
        lazily — or from ``batches``, its rows (``batch_columns`` of them) read already."""
        a = self.arrays
        parts = self.parts(gid)
        if key is None:
            key = a.keys[gid].as_py()
        num_examples = parts[0].num_rows if len(parts) == 1 else \
            sum(p.num_rows for p in parts)
        return Group.make(key, num_examples, int(a.bytes[gid]), int(a.words[gid]),
                          self.group_files, batch_columns, parts=parts, batches=batches)

    def read_group(self, parts: Sequence[Part], columns: list[str], key: Key,
                   ) -> list[pa.RecordBatch]:
        """All rows of a (small) group, checked to be exactly the rows of ``key``."""
        if len(parts) == 1:
            p = parts[0]
            return self.shards.read_part(p.shard, p.first_row, p.num_rows, columns, key)
        return [b for p in parts for b in self.shards.read_group_rows(
            p.shard, p.first_row, p.num_rows, columns, key)]

    def clear_cache(self) -> None:
        """Forget decoded row groups (e.g. to time uncached reads)."""
        self.shards.clear_cache()

    def __repr__(self) -> str:
        return f"Store({self.root!r}, groups={self.num_groups})"


def _refuse_outside(root: str, rel: str) -> None:
    """CorruptDatasetError if ``rel`` leads outside the dataset through a symbolic link
    (the ``.fedgroups`` folder, or the manifest or index file)."""
    outside = leads_outside(root, rel)
    if outside:
        raise CorruptDatasetError(
            f"{outside}; fedgroups reads only files inside the dataset — put the files "
            "themselves there (or copy the whole dataset) instead of a link")
