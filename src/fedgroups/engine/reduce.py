"""Reduce side of the local engine: one partition's runs → sorted shards + index rows.

A partition that fits its memory budget is sorted in one go. One that does not (a skewed
key, a group larger than RAM) is sorted run by run and then merged in bounded memory: only
a window of each run is held at a time, so no group is ever held whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.engine.runs import RUN_BATCH_ROWS, Run
from fedgroups.format.finish import PartitionResult
from fedgroups.format.manifest import file_sha256
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN
from fedgroups.format.writer import ROW_GROUP_BYTES, SHARD_BYTES, ShardWriter


def _read_run(path: str) -> pa.Table:
    with pa.OSFile(path, "rb") as f:
        return pa.ipc.open_file(f).read_all()


def sort_order(keys: pa.Array | pa.ChunkedArray, ordinals: np.ndarray) -> np.ndarray:
    """Row order sorting by (key, ordinal). Keys are ranked through their distinct values,
    so the string comparisons happen once per distinct key, not once per row pair."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if pa.types.is_integer(keys.type):
        rank = np.asarray(keys)
    else:
        encoded = pc.dictionary_encode(keys)
        by_value = np.asarray(pc.sort_indices(encoded.dictionary))
        ranks = np.empty(len(by_value), np.int64)
        ranks[by_value] = np.arange(len(by_value))
        rank = ranks[np.asarray(encoded.indices)]
    return np.lexsort((ordinals, rank))


def _sorted(table: pa.Table) -> pa.Table:
    order = sort_order(table.column(KEY_COLUMN), np.asarray(table.column(ORDINAL_COLUMN)))
    return table.take(pa.array(order))


MERGE_WINDOW_BYTES = 1 << 20  # what a merge holds of each run at a time


def _window_rows(table: pa.Table) -> int:
    """Rows in about MERGE_WINDOW_BYTES of this table (16 .. RUN_BATCH_ROWS)."""
    per_row = max(1, table.nbytes // max(table.num_rows, 1))
    return int(min(RUN_BATCH_ROWS, max(16, MERGE_WINDOW_BYTES // per_row)))


def _write_run(path: str, table: pa.Table) -> None:
    """A sorted run in batches of about MERGE_WINDOW_BYTES, so merging it stays small."""
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=_window_rows(table))


def _run_batches(path: str) -> Iterator[pa.Table]:
    """The batches of a sorted run, read one at a time (the file is opened, not loaded)."""
    with pa.OSFile(path, "rb") as f:
        reader = pa.ipc.open_file(f)
        for i in range(reader.num_record_batches):
            yield pa.Table.from_batches([reader.get_batch(i)])


def _upto(table: pa.Table, key: object, ordinal: int) -> int:
    """How many leading rows of a sorted table are <= (key, ordinal)."""
    keys = table.column(KEY_COLUMN)
    k = pa.scalar(key, keys.type)
    le = pc.or_(pc.less(keys, k),
                pc.and_(pc.equal(keys, k),
                        pc.less_equal(table.column(ORDINAL_COLUMN),
                                      pa.scalar(ordinal, pa.uint64()))))
    return int(pc.sum(le).as_py() or 0)


def merge_sorted_runs(paths: list[str]) -> Iterator[pa.Table]:
    """K-way merge of sorted runs, yielding sorted tables; memory ~ k run batches."""
    streams = [_run_batches(p) for p in paths]
    heads: list[pa.Table | None] = [next(s, None) for s in streams]
    while True:
        live = [i for i, h in enumerate(heads) if h is not None]
        if not live:
            return
        # Everything up to the smallest "last row" among the heads can be emitted safely.
        bound = min(
            ((heads[i].column(KEY_COLUMN)[-1].as_py(),  # type: ignore[union-attr]
              heads[i].column(ORDINAL_COLUMN)[-1].as_py()) for i in live),  # type: ignore
        )
        out = []
        for i in live:
            h = heads[i]
            assert h is not None
            n = _upto(h, bound[0], bound[1])
            if n:
                out.append(h.slice(0, n))
            rest = h.slice(n)
            heads[i] = rest if rest.num_rows else next(streams[i], None)
        yield _sorted(pa.concat_tables(out))


def _merge_to_file(paths: list[str], out: str) -> None:
    writer = None
    try:
        for table in merge_sorted_runs(paths):
            if writer is None:
                sink = pa.OSFile(out, "wb")
                writer = pa.ipc.new_file(sink, table.schema)
            writer.write_table(table, max_chunksize=_window_rows(table))
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    for p in paths:
        os.remove(p)


def reduce_partition(
    partition: int, runs: list[Run], *, root: str, schema: pa.Schema, text_column: str | None,
    sort_in_memory_bytes: int, scratch: str, shard_bytes: int = SHARD_BYTES,
    group_columns: tuple[str, ...] = (),
) -> PartitionResult:
    """Sort/merge one partition's runs and write its shards under ``root``."""
    writer = ShardWriter(root=root, partition=partition, schema=schema, text_column=text_column,
                         shard_bytes=shard_bytes,
                         row_group_bytes=min(ROW_GROUP_BYTES, max(shard_bytes // 4, 1)),
                         group_columns=group_columns)
    total = sum(r.num_bytes for r in runs)
    if total <= sort_in_memory_bytes or len(runs) == 1 and runs[0].num_bytes <= sort_in_memory_bytes:
        tables = [_read_run(r.path) for r in runs]
        table = _sorted(pa.concat_tables(tables, promote_options="permissive"))
        del tables
        writer.write(table.drop_columns([ORDINAL_COLUMN]))
        del table
    else:
        sorted_paths = []
        for i, r in enumerate(runs):  # each run fits: it was spilled from a bounded buffer
            path = os.path.join(scratch, f"sorted-p{partition:05d}-{i:05d}.arrow")
            _write_run(path, _sorted(_read_run(r.path)))
            pa.default_memory_pool().release_unused()  # keep the allocator's cache small
            os.remove(r.path)
            sorted_paths.append(path)
        # Merge at most fan_in runs at once (each holds a ~1 MiB window): more runs than
        # that are first merged into longer runs, so memory never grows with the data.
        fan_in = max(2, sort_in_memory_bytes // (2 * MERGE_WINDOW_BYTES))
        level = 0
        while len(sorted_paths) > fan_in:
            merged = []
            for j in range(0, len(sorted_paths), fan_in):
                batch = sorted_paths[j:j + fan_in]
                path = os.path.join(scratch, f"merged-p{partition:05d}-{level}-{j:05d}.arrow")
                _merge_to_file(batch, path)
                merged.append(path)
            sorted_paths = merged
            level += 1
        for table in merge_sorted_runs(sorted_paths):
            writer.write(table.drop_columns([ORDINAL_COLUMN]))
        for p in sorted_paths:
            os.remove(p)
    index = writer.close()
    shards = []
    for s in writer.shards:
        full = os.path.join(root, s.path)
        shards.append({"path": s.path, "num_rows": s.num_rows, "num_bytes": s.num_bytes,
                       "file_bytes": os.path.getsize(full), "sha256": file_sha256(full)})
    for r in runs:
        if os.path.exists(r.path):
            os.remove(r.path)
    return PartitionResult(partition=partition, shards=shards, index=index)


