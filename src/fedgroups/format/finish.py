"""The last step of every build: one index for all partitions, then the manifest."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedgroups.arrays import from_numpy, scalar, to_numpy
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.card import write_card
from fedgroups.format.checks import index_problems, tiling_problems
from fedgroups.format.group_columns import group_fields
from fedgroups.format.manifest import file_sha256, now_iso, schema_to_json, write_json_atomic
from fedgroups.format.publish import fault_point
from fedgroups.format.spec import (
    BUILD_ID_KEY,
    DROPPED_KEY,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_FILE,
    KEY_COLUMN,
    MANIFEST_FILE,
    build_id_of,
    index_schema,
    is_build_id,
    key_type_name,
    without_build_id,
)


@dataclass
class PartitionResult:
    """What writing one partition produced: its shard files and index rows (local shards)."""

    partition: int
    shards: list[dict[str, Any]]  # path, num_rows, num_bytes, file_bytes, sha256
    index: pa.Table


def finish(
    root: str,
    results: list[PartitionResult],
    *,
    schema: pa.Schema,
    key_description: dict[str, Any],
    source_description: dict[str, Any],
    build_settings: dict[str, Any],
    text_column: str | None,
    dropped: int = 0,
    group_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """Write index.parquet and then manifest.json into ``root``; return the manifest.

    ``schema`` is the shards' schema, carrying the build id (``spec.with_build_id``) that
    every shard was written with; the index and the manifest get the same id.
    """
    from fedgroups import __version__

    build_id = build_id_of(schema.metadata)
    if not is_build_id(build_id):
        raise ValueError("internal: the engine must write shards with a schema carrying a "
                         "build id (format.spec.with_build_id)")
    key_type = schema.field(KEY_COLUMN).type
    shards: list[dict[str, Any]] = []
    tables = []
    for r in sorted(results, key=lambda r: r.partition):
        if r.index.num_rows:
            shard_col = pc.add(r.index.column("shard"), scalar(len(shards), pa.int32()))
            tables.append(r.index.set_column(r.index.schema.get_field_index("shard"), "shard",
                                             shard_col.cast(pa.int32())))
        shards.extend(r.shards)
    ischema = index_schema(key_type, group_fields(schema, group_columns, "the shard schema"))
    index = pa.concat_tables(tables).cast(ischema) if tables else ischema.empty_table()
    index = index.sort_by([("key", "ascending"), ("part", "ascending")])
    index_path = os.path.join(root, INDEX_FILE)
    os.makedirs(os.path.dirname(index_path), exist_ok=True)
    index = index.replace_schema_metadata({BUILD_ID_KEY: build_id, DROPPED_KEY: str(dropped)})
    pq.write_table(index, index_path, compression="zstd", row_group_size=1 << 20)
    fault_point("finish:index-written")

    nrows = to_numpy(index.column("num_rows")) if index.num_rows else np.zeros(0, np.int64)
    groups = int(np.count_nonzero(to_numpy(index.column("part")) == 0)) if index.num_rows else 0
    totals = {
        "groups": groups,
        "parts": index.num_rows,
        "examples": int(nrows.sum()),
        "bytes": int(pc.sum(index.column("num_bytes")).as_py() or 0),
        "words": int(pc.sum(index.column("num_words")).as_py() or 0),
        "shards": len(shards),
        "dropped_examples": dropped,
        "largest_group_examples": _largest_group(index),
    }
    _check_index(index_path, index, shards, totals)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "build_id": build_id,
        "created": now_iso(),
        "fedgroups_version": __version__,
        "key": {**key_description, "column": KEY_COLUMN, "type": key_type_name(key_type)},
        "text_column": text_column,
        "group_columns": list(group_columns),
        "source": source_description,
        "build": build_settings,
        "schema": schema_to_json(without_build_id(schema)),
        "totals": totals,
        "index": {
            "path": INDEX_FILE,
            "num_rows": index.num_rows,
            "file_bytes": os.path.getsize(index_path),
            "sha256": file_sha256(index_path),
        },
        "shards": shards,
    }
    write_card(root, manifest, index)  # documentation, not checksummed; before the manifest
    write_json_atomic(os.path.join(root, MANIFEST_FILE), manifest)
    fault_point("finish:manifest-written")
    return manifest


def _check_index(path: str, index: pa.Table, shards: list[dict[str, Any]],
                 totals: dict[str, Any]) -> None:
    """Run the reader's checks of the index (and the tiling of every shard) before the
    manifest makes this a dataset: a build whose index the reader would refuse stops here,
    with nothing published."""
    def column(name: str) -> np.ndarray:
        return to_numpy(index.column(name)).astype(np.int64, copy=False) if index.num_rows \
            else np.zeros(0, np.int64)

    part, rows, shard, first = (column(c) for c in ("part", "num_rows", "shard", "first_row"))
    keys = index.column("key").combine_chunks()
    group_keys = keys.take(from_numpy(np.flatnonzero(part == 0).astype(np.int64)))
    shard_rows = [s["num_rows"] for s in shards]
    problems = index_problems(part=part, rows=rows, shard=shard, first=first,
                              group_keys=group_keys, shard_rows=shard_rows, totals=totals)
    problems += tiling_problems(rows=rows, shard=shard, first=first, shard_rows=shard_rows)
    if sum(shard_rows) != totals["examples"]:
        problems.append(f"the shards hold {sum(shard_rows)} examples, the index "
                        f"{totals['examples']}")
    if problems:
        raise CorruptDatasetError(
            f"{path}: the index this build wrote is inconsistent ({'; '.join(problems)}); "
            "the build stopped before publishing, nothing at the output changed — this is a "
            "bug in fedgroups, please report it")


def _largest_group(index: pa.Table) -> int:
    """Examples in the largest group (the index is sorted by key and part: a group's parts
    are adjacent, part 0 first)."""
    if index.num_rows == 0:
        return 0
    starts = np.flatnonzero(to_numpy(index.column("part")) == 0)
    return int(np.add.reduceat(to_numpy(index.column("num_rows")), starts).max())
