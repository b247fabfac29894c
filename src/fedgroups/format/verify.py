"""``fedgroups verify``: check every field of a dataset's manifest against its files.

What is checked (docs/format.md, "What verify checks"): the manifest's structure and that
every path in it is a plain relative path that stays inside the dataset; the index's size,
checksum, rows, order and part numbers; each shard's size, checksum, footer, schema, build
id and row count; that the index's parts tile each shard exactly with the right keys; each
part's bytes and words, recomputed from the rows; every total; the build id of every file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedgroups.errors import FedGroupsError
from fedgroups.format.checks import as_read_from_parquet, key_type_problem, schema_difference
from fedgroups.format.layout import leads_outside, manifest_path, stray_data_files
from fedgroups.format.manifest import file_sha256, read_manifest, schema_from_json
from fedgroups.format.rowstats import row_bytes, word_counts
from fedgroups.format.spec import DROPPED_KEY, GROUP_COLUMN_PREFIX, KEY_COLUMN, build_id_of
from fedgroups.format.writer import run_starts


def verify(path: str, *, progress: Callable[[str], None] | None = None) -> list[str]:
    """Return a list of problems (empty when the dataset is sound), each naming its file."""
    root = os.path.abspath(path)
    try:
        manifest = read_manifest(root)
    except FedGroupsError as e:
        return [str(e)]
    problems = _outside(root, manifest)
    if problems:
        return problems  # never open a file the manifest should not name
    index = _index(root, manifest, problems)
    if index is None:
        return problems
    schema = schema_from_json(manifest["schema"])
    wrong_type = key_type_problem(schema.field(KEY_COLUMN).type, manifest["key"],
                                  f"the manifest schema's {KEY_COLUMN!r} values")
    if wrong_type:
        problems.append(f"{manifest_path(root)}: {wrong_type}")
    shard_col = np.asarray(index.column("shard"))
    for i, shard in enumerate(manifest["shards"]):
        if progress:
            progress(shard["path"])
        rows = index.filter(pa.array(shard_col == i)).sort_by("first_row")
        _shard(root, manifest, schema, i, rows, problems)
    _totals(manifest, index, problems)
    problems += stray_data_files(root, manifest)  # what root readers would also count
    return problems


def _outside(root: str, manifest: dict[str, Any]) -> list[str]:
    """Paths that lead outside the dataset (through a symbolic link): the manifest's own,
    the index's and every shard's."""
    rels = [os.path.relpath(manifest_path(root), root), manifest["index"]["path"],
            *(s["path"] for s in manifest["shards"])]
    return [p for p in (leads_outside(root, rel) for rel in rels) if p]


def _index(root: str, manifest: dict[str, Any], problems: list[str]) -> pa.Table | None:
    info = manifest["index"]
    path = os.path.join(root, info["path"])
    if not os.path.exists(path):
        problems.append(f"{path}: index file is missing")
        return None
    if os.path.getsize(path) != info["file_bytes"]:
        problems.append(f"{path}: {os.path.getsize(path)} bytes, manifest says "
                        f"{info['file_bytes']}")
    if file_sha256(path) != info["sha256"]:
        problems.append(f"{path}: sha256 differs from the manifest")
    try:
        f = pq.ParquetFile(path)
        index = f.read()
    except (OSError, pa.ArrowException) as e:
        problems.append(f"{path}: unreadable ({e})")
        return None
    expected = ("key", "part", "shard", "first_row", "num_rows", "num_bytes", "num_words")
    missing = [c for c in expected if c not in index.column_names]
    if missing:
        problems.append(f"{path}: no column {missing[0]!r}")
        return None
    _same_build(path, f.metadata.metadata, manifest, problems)
    dropped = (f.metadata.metadata or {}).get(DROPPED_KEY.encode())
    if dropped is not None and dropped != str(manifest["totals"]["dropped_examples"]).encode():
        problems.append(f"{path}: records {dropped.decode(errors='replace')} dropped examples, "
                        f"manifest says {manifest['totals']['dropped_examples']}")
    if index.num_rows != info["num_rows"]:
        problems.append(f"{path}: {index.num_rows} rows, manifest says {info['num_rows']}")
    _order(index, problems, path)
    wrong_type = key_type_problem(index.schema.field("key").type, manifest["key"])
    if wrong_type:
        problems.append(f"{path}: {wrong_type}")
    shard = np.asarray(index.column("shard"))
    if np.any((shard < 0) | (shard >= len(manifest["shards"]))):
        problems.append(f"{path}: a part names a shard outside 0..{len(manifest['shards']) - 1}")
        return None
    columns = [c for c in manifest.get("group_columns", [])
               if GROUP_COLUMN_PREFIX + c not in index.column_names]
    if columns:
        problems.append(f"{path}: no index column for group column {columns[0]!r}")
    return index


def _same_build(path: str, metadata: dict[bytes, bytes] | None, manifest: dict[str, Any],
                problems: list[str]) -> None:
    want, got = manifest.get("build_id"), build_id_of(metadata)
    if want is None and got is not None:
        problems.append(f"{path}: belongs to build {got}, the manifest names no build (an "
                        "older manifest, or one altered)")
    elif want is not None and got != want:
        problems.append(f"{path}: belongs to build {got or 'none'}, the manifest is build "
                        f"{want} (a file from another build)")


def _order(index: pa.Table, problems: list[str], where: str) -> None:
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


def _shard(root: str, manifest: dict[str, Any], schema: pa.Schema, i: int, rows: pa.Table,
           problems: list[str]) -> None:
    shard = manifest["shards"][i]
    spath = os.path.join(root, shard["path"])
    if not os.path.exists(spath):
        problems.append(f"{spath}: shard file is missing")
        return
    if os.path.getsize(spath) != shard["file_bytes"]:
        problems.append(f"{spath}: {os.path.getsize(spath)} bytes, manifest says "
                        f"{shard['file_bytes']} (truncated or altered)")
        return
    if file_sha256(spath) != shard["sha256"]:
        problems.append(f"{spath}: sha256 differs from the manifest (altered)")
        return
    try:
        f = pq.ParquetFile(spath, page_checksum_verification=True)
        _same_build(spath, f.metadata.metadata, manifest, problems)
        difference = schema_difference(f.schema_arrow, as_read_from_parquet(schema))
        if difference:
            problems.append(f"{spath}: schema differs from the manifest's: {difference}")
            return
        sizes, words, keys = _row_stats(f, manifest.get("text_column"), schema)
    except (OSError, pa.ArrowException) as e:
        problems.append(f"{spath}: unreadable ({e})")
        return
    if len(keys) != shard["num_rows"]:
        problems.append(f"{spath}: {len(keys)} rows, manifest says {shard['num_rows']}")
        return
    if int(sizes.sum()) != shard["num_bytes"]:
        problems.append(f"{spath}: {int(sizes.sum())} bytes of rows, manifest says "
                        f"{shard['num_bytes']}")
    first = np.asarray(rows.column("first_row"))
    counts = np.asarray(rows.column("num_rows"))
    if not (len(first) and first[0] == 0 and np.array_equal(first[1:], (first + counts)[:-1])
            and first[-1] + counts[-1] == len(keys)):
        problems.append(f"{spath}: index entries do not tile the shard's {len(keys)} rows")
        return
    starts = run_starts(keys)
    if not (np.array_equal(starts, first)
            and keys.take(pa.array(starts)).equals(rows.column("key").combine_chunks())):
        problems.append(f"{spath}: group keys in the shard do not match the index")
        return
    for name, per_row in (("num_bytes", sizes), ("num_words", words)):
        if not np.array_equal(np.add.reduceat(per_row, first), np.asarray(rows.column(name))):
            problems.append(f"{spath}: the index's {name} of its groups differ from the rows")


def _row_stats(f: pq.ParquetFile, text_column: str | None, schema: pa.Schema,
               ) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Per-row bytes and words, and the key column, one row group at a time; the bytes of
    the rows as the build counted them, in the manifest's types (a date64 column is read
    back as date32: half the bytes)."""
    sizes, words, keys = [], [], []
    for rg in range(f.metadata.num_row_groups):
        t = f.read_row_group(rg)
        if not t.schema.equals(schema):
            t = t.cast(schema)
        sizes.append(row_bytes(t))
        words.append(word_counts(t.column(text_column)) if text_column else
                     np.zeros(t.num_rows, np.int64))
        keys.append(t.column(KEY_COLUMN).combine_chunks())
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), pa.array([], pa.string())
    return (np.concatenate(sizes).astype(np.int64), np.concatenate(words).astype(np.int64),
            pa.concat_arrays(keys))


def _totals(manifest: dict[str, Any], index: pa.Table, problems: list[str]) -> None:
    totals = manifest["totals"]
    shards = manifest["shards"]
    part = np.asarray(index.column("part"))
    rows = np.asarray(index.column("num_rows"), dtype=np.int64)
    group = np.cumsum(part == 0) - 1
    per_group = np.bincount(group, weights=rows).astype(np.int64) if len(rows) else rows
    found = {
        "groups": int(np.count_nonzero(part == 0)),
        "parts": index.num_rows,
        "examples": int(rows.sum()),
        "bytes": int(np.asarray(index.column("num_bytes")).sum()),
        "words": int(np.asarray(index.column("num_words")).sum()),
        "shards": len(shards),
        "largest_group_examples": int(per_group.max()) if len(per_group) else 0,
    }
    for k, v in found.items():
        if totals[k] != v:
            problems.append(f"manifest totals say {totals[k]} {k}, the files say {v}")
    if sum(s["num_rows"] for s in shards) != found["examples"]:
        problems.append("manifest shard row counts do not add up to the index's examples")
    if sum(s["num_bytes"] for s in shards) != found["bytes"]:
        problems.append("manifest shard bytes do not add up to the index's bytes")
