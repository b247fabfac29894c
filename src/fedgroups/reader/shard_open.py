"""Opening one shard file, checked against the manifest the dataset was opened with.

A shard is opened once (see :class:`~fedgroups.reader.shards.ShardCache`); the checks
here cost nothing beyond the footer the reader parses anyway:

- the path stays inside the dataset (no symbolic link to elsewhere);
- the file is the one the manifest lists: same build id, size and row count;
- its schema is the manifest's (a column renamed or retyped in the footer is refused, not
  read as a missing column).

When a check fails because the dataset was rebuilt after it was opened (a ``build
--overwrite`` switched it), the error says so — "open the dataset again" — rather than
calling the file damaged.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedgroups.errors import CorruptDatasetError, FedGroupsError
from fedgroups.format.checks import schema_difference
from fedgroups.format.layout import leads_outside
from fedgroups.format.spec import KEY_COLUMN, build_id_of

OpenShard = tuple[str, pq.FileMetaData, np.ndarray, list[int], pa.NativeFile]


def open_checked(root: str, info: dict[str, Any], build_id: str | None,
                 schema: pa.Schema | None) -> OpenShard:
    """The shard ``info`` (its manifest entry) of the dataset at ``root``, opened and
    checked: (path, footer, row group starts, row group bytes, open file)."""
    path = os.path.join(root, info["path"])
    outside = leads_outside(root, info["path"])
    if outside:
        raise CorruptDatasetError(
            f"{outside}; fedgroups reads only files inside the dataset — put the file itself "
            "there (or copy the whole dataset) instead of a link")
    try:
        source = pa.OSFile(path)
        size = source.size()
    except OSError as e:
        raise _replaced(root, info, build_id, path) or \
            CorruptDatasetError(f"{path}: shard file is missing ({e})") from e
    try:
        opened = pq.ParquetFile(source, page_checksum_verification=True)
        md: pq.FileMetaData | None = opened.metadata
        footer_error = None
    except (OSError, pa.ArrowException) as e:
        opened, md, footer_error = None, None, e
    found = build_id_of(md.metadata) if md is not None else None
    if md is not None and build_id is not None and found != build_id:
        raise _another_build(path, found, build_id)
    if size != info["file_bytes"] or md is None:
        replaced = _replaced(root, info, build_id, path)
        if replaced is not None:
            raise replaced
    if size != info["file_bytes"]:
        raise CorruptDatasetError(
            f"{path}: {size} bytes on disk but the manifest says {info['file_bytes']}; "
            "the shard was truncated or altered — rebuild the dataset")
    if md is None:
        raise CorruptDatasetError(f"{path}: not a readable Parquet file ({footer_error})")
    assert opened is not None
    _check_schema(path, opened, schema)
    if md.num_rows != info["num_rows"]:
        raise CorruptDatasetError(
            f"{path}: has {md.num_rows} rows but the manifest says {info['num_rows']}")
    groups = [md.row_group(i) for i in range(md.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum([g.num_rows for g in groups])]).astype(np.int64)
    return path, md, starts, [g.total_byte_size for g in groups], source


def _check_schema(path: str, opened: pq.ParquetFile, schema: pa.Schema | None) -> None:
    if KEY_COLUMN not in opened.metadata.schema.names:
        raise CorruptDatasetError(f"{path}: the footer names no {KEY_COLUMN!r} column; the "
                                  "shard is damaged — rebuild the dataset")
    if schema is None:
        return
    try:  # as Arrow reads the file: the Parquet schema with the stored Arrow types applied
        found = opened.schema_arrow
    except (OSError, pa.ArrowException) as e:
        raise CorruptDatasetError(f"{path}: the footer's schema cannot be read ({e}); the "
                                  "shard is damaged — rebuild the dataset") from e
    difference = schema_difference(found, schema, found_as=f"shard {os.path.basename(path)}")
    if difference:
        raise CorruptDatasetError(
            f"{path}: {difference} — the file (or the manifest) was altered; rebuild the "
            "dataset or restore the file")


def _another_build(path: str, found: str | None, opened: str | None) -> CorruptDatasetError:
    return CorruptDatasetError(
        f"{path}: belongs to another build ({found or 'none'}) than the dataset that was "
        f"opened ({opened or 'none'}); it was replaced (a build --overwrite?) while open — "
        "open the dataset again")


def _replaced(root: str, info: dict[str, Any], build_id: str | None,
              path: str) -> CorruptDatasetError | None:
    """The error to raise if the dataset at ``root`` is no longer the one opened (its
    manifest now names another build, or lists this shard otherwise); None if it is."""
    from fedgroups.format.manifest import read_manifest
    try:
        now = read_manifest(root)
    except FedGroupsError:
        return CorruptDatasetError(
            f"{path}: the dataset at {root} no longer has the manifest it was opened with "
            "(replaced or removed while open) — open the dataset again")
    same = [s for s in now["shards"] if s.get("path") == info["path"]]
    if now.get("build_id") != build_id or not same or same[0] != info:
        return _another_build(path, now.get("build_id"), build_id)
    return None
