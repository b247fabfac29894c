"""``fedgroups verify``: re-check every checksum and count of a dataset against its manifest."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedgroups.errors import FedGroupsError
from fedgroups.format.manifest import file_sha256, read_manifest, schema_from_json
from fedgroups.format.spec import KEY_COLUMN
from fedgroups.format.writer import run_starts


def _check_index(index: pa.Table, problems: list[str], where: str) -> None:
    keys = index.column("key").combine_chunks()
    parts = np.asarray(index.column("part"))
    if index.num_rows > 1:
        k0, k1 = keys.slice(0, len(keys) - 1), keys.slice(1)
        bad = pc.or_(pc.greater(k0, k1), pc.and_(pc.equal(k0, k1),
                                                  pa.array(parts[:-1] >= parts[1:])))
        if pc.any(bad).as_py():
            problems.append(f"{where}: rows are not sorted by (key, part)")
    starts = run_starts(keys)
    expected = np.arange(len(parts)) - np.repeat(starts, np.diff(np.append(starts, len(parts))))
    if not np.array_equal(parts, expected):
        problems.append(f"{where}: part numbers are not 0, 1, 2, ... within each group")


def verify(path: str, *, progress: Callable[[str], None] | None = None) -> list[str]:
    """Return a list of problems (empty when the dataset is sound)."""
    root = os.path.abspath(path)
    try:
        manifest = read_manifest(root)
    except FedGroupsError as e:
        return [str(e)]
    problems: list[str] = []
    info = manifest["index"]
    index_path = os.path.join(root, info["path"])
    if not os.path.exists(index_path):
        return [f"{index_path}: index file is missing"]
    if file_sha256(index_path) != info["sha256"]:
        problems.append(f"{index_path}: sha256 differs from the manifest")
    try:
        index = pq.read_table(index_path)
    except (OSError, pa.ArrowException) as e:
        return problems + [f"{index_path}: unreadable ({e})"]
    if index.num_rows != info["num_rows"]:
        problems.append(f"{index_path}: {index.num_rows} rows, manifest says {info['num_rows']}")
    _check_index(index, problems, index_path)
    schema = schema_from_json(manifest["schema"])
    totals = manifest["totals"]
    shard_col = np.asarray(index.column("shard"))
    for i, shard in enumerate(manifest["shards"]):
        spath = os.path.join(root, shard["path"])
        if progress:
            progress(shard["path"])
        if not os.path.exists(spath):
            problems.append(f"{spath}: shard file is missing")
            continue
        if os.path.getsize(spath) != shard["file_bytes"]:
            problems.append(f"{spath}: {os.path.getsize(spath)} bytes, manifest says "
                            f"{shard['file_bytes']} (truncated or altered)")
            continue
        if file_sha256(spath) != shard["sha256"]:
            problems.append(f"{spath}: sha256 differs from the manifest (altered)")
            continue
        try:
            f = pq.ParquetFile(spath)
            if not f.schema_arrow.equals(schema):
                problems.append(f"{spath}: schema differs from the manifest's")
            keys = f.read(columns=[KEY_COLUMN]).column(KEY_COLUMN).combine_chunks()
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{spath}: unreadable ({e})")
            continue
        if len(keys) != shard["num_rows"]:
            problems.append(f"{spath}: {len(keys)} rows, manifest says {shard['num_rows']}")
            continue
        rows = index.filter(pa.array(shard_col == i)).sort_by("first_row")
        first = np.asarray(rows.column("first_row"))
        counts = np.asarray(rows.column("num_rows"))
        if not (len(first) and first[0] == 0 and np.array_equal(first[1:], (first + counts)[:-1])
                and first[-1] + counts[-1] == len(keys)):
            problems.append(f"{spath}: index entries do not tile the shard's {len(keys)} rows")
            continue
        starts = run_starts(keys)
        if not (np.array_equal(starts, first)
                and keys.take(pa.array(starts)).equals(rows.column("key").combine_chunks())):
            problems.append(f"{spath}: group keys in the shard do not match the index")
    n_rows = int(pc.sum(index.column("num_rows")).as_py() or 0)
    if n_rows != totals["examples"]:
        problems.append(f"manifest totals say {totals['examples']} examples, index has {n_rows}")
    if sum(s["num_rows"] for s in manifest["shards"]) != totals["examples"]:
        problems.append("manifest shard row counts do not add up to the total examples")
    groups = int(np.count_nonzero(np.asarray(index.column("part")) == 0))
    if groups != totals["groups"]:
        problems.append(f"manifest totals say {totals['groups']} groups, index has {groups}")
    return problems
