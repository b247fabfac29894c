"""The on-disk contract of a grouped dataset (documented in docs/format.md).

A grouped dataset is a directory (format version 2; version 1 in format/layout.py)::

    shard-PPPPP-SSSS.parquet   examples + the key column, groups contiguous
    .fedgroups/manifest.json   written last and atomically; without it, not a dataset
    .fedgroups/index.pq        one row per group part, sorted by (key, part) (Parquet)

Everything here is plain data: no code runs when a dataset is opened.

Compatibility. ``FORMAT_VERSION`` changes only when a reader of the previous version would
misread a new dataset; readers refuse a newer version. Additions that an older reader may
ignore keep the version: the **build id** (``manifest["build_id"]``, and the same value
under :data:`BUILD_ID_KEY` in the Parquet key-value metadata of the index and of every
shard) is one. A manifest without one was written before build ids; it is read as
before (sizes, row counts and checksums tie its files to it). A manifest with one is read
only with files that carry the same id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

import pyarrow as pa

FORMAT_NAME = "fedgroups.grouped-dataset"
FORMAT_VERSION = 2
# Shards at the root; everything else in a dot-folder no reader's data glob enters, and the
# index not named *.parquet (DuckDB's ** enters dot-folders): see format/layout.py.
META_DIR = ".fedgroups"
MANIFEST_FILE = f"{META_DIR}/manifest.json"
INDEX_FILE = f"{META_DIR}/index.pq"
KEY_COLUMN = "__group__"
# Column added while building to keep each group's rows in source order; never written.
ORDINAL_COLUMN = "__ordinal__"
# Index columns holding a group column's value (``--group-columns``) are named with this.
GROUP_COLUMN_PREFIX = "group_column."

# Parquet key-value metadata key of the index and every shard: the build they belong to.
BUILD_ID_KEY = "fedgroups.build_id"
# ... and in the index: the examples dropped on purpose (a second record for ``verify``).
DROPPED_KEY = "fedgroups.dropped_examples"
_BUILD_ID = re.compile(r"[0-9a-f]{32}")

KEY_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "binary": pa.binary(),
    "int64": pa.int64(),
}


def key_type_name(t: pa.DataType) -> str:
    for name, kt in KEY_TYPES.items():
        if t == kt:
            return name
    raise ValueError(f"not a key type: {t}")


def index_schema(key_type: pa.DataType, group_fields: Sequence[pa.Field] = ()) -> pa.Schema:
    """Schema of the index: one row per (group, part), then any group columns."""
    return pa.schema(
        [
            pa.field("key", key_type, nullable=False),
            pa.field("part", pa.int32(), nullable=False),  # 0.. within the group
            pa.field("shard", pa.int32(), nullable=False),  # position in manifest["shards"]
            pa.field("first_row", pa.int64(), nullable=False),  # row offset inside the shard
            pa.field("num_rows", pa.int64(), nullable=False),
            pa.field("num_bytes", pa.int64(), nullable=False),  # uncompressed bytes of the rows
            pa.field("num_words", pa.int64(), nullable=False),  # whitespace words in text column
            *group_fields,  # group_column.<name>: the group's value, on every part row
        ]
    )


def shard_name(partition: int, seq: int) -> str:
    return f"shard-{partition:05d}-{seq:04d}.parquet"


def new_build_id() -> str:
    """A fresh build id (128 random bits as 32 hex digits)."""
    return uuid.uuid4().hex


def is_build_id(value: object) -> bool:
    return isinstance(value, str) and _BUILD_ID.fullmatch(value) is not None


def with_build_id(schema: pa.Schema, build_id: str) -> pa.Schema:
    """``schema`` carrying ``build_id`` in its metadata: every file written with it (shards
    through ``ShardWriter``, the index through ``finish``) records the build it belongs to."""
    assert is_build_id(build_id), build_id
    return schema.with_metadata({**(schema.metadata or {}), BUILD_ID_KEY.encode(): build_id.encode()})


def without_build_id(schema: pa.Schema) -> pa.Schema:
    meta = {k: v for k, v in (schema.metadata or {}).items() if k != BUILD_ID_KEY.encode()}
    return schema.with_metadata(meta) if meta else schema.remove_metadata()


def build_id_of(metadata: Mapping[bytes, bytes] | None) -> str | None:
    """The build id in a file's (or schema's) key-value metadata, or None."""
    raw = (metadata or {}).get(BUILD_ID_KEY.encode())
    return raw.decode("utf-8", "replace") if raw is not None else None
