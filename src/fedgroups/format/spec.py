"""The on-disk contract of a grouped dataset (documented in docs/format.md).

A grouped dataset is a directory (format version 2; version 1 in format/layout.py)::

    .fedgroups/manifest.json      written last and atomically; without it, not a dataset
    .fedgroups/index.pq           one row per group part, sorted by (key, part) (Parquet)
    data/shard-PPPPP-SSSS.parquet examples + the key column, groups contiguous

Everything here is plain data: no code runs when a dataset is opened.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

FORMAT_NAME = "fedgroups.grouped-dataset"
FORMAT_VERSION = 2
# Everything but examples lives in a dot-folder no reader's data glob enters, and the index
# is not named *.parquet (DuckDB's ** enters dot-folders): see format/layout.py.
META_DIR = ".fedgroups"
MANIFEST_FILE = f"{META_DIR}/manifest.json"
INDEX_FILE = f"{META_DIR}/index.pq"
SHARDS_DIR = "data"
KEY_COLUMN = "__group__"
# Column added while building to keep each group's rows in source order; never written.
ORDINAL_COLUMN = "__ordinal__"
# Index columns holding a group column's value (``--group-columns``) are named with this.
GROUP_COLUMN_PREFIX = "group_column."

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
    """Schema of index.parquet: one row per (group, part), then any group columns."""
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
    return f"{SHARDS_DIR}/shard-{partition:05d}-{seq:04d}.parquet"
