"""Heterogeneity of a label column across groups.

The index does not know labels, so this reads two columns (the group key and the label)
of every shard, one record batch at a time, and keeps only counts per (group, label):
memory grows with groups × labels present, never with examples.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedgroups.errors import SettingError
from fedgroups.format.spec import KEY_COLUMN
from fedgroups.stats.summary import as_dataset, describe


def label_counts(dataset: object, column: str) -> pa.Table:
    """Examples per (group, label): columns key, label, count; sorted by key then label."""
    ds = as_dataset(dataset)
    names = ds.schema.names
    if column not in names:
        raise SettingError(f"no label column {column!r} in {ds.root}; columns are: "
                           f"{', '.join(names)}")
    partial: list[pa.Table] = []
    for shard in ds.manifest["shards"]:
        f = pq.ParquetFile(os.path.join(ds.root, shard["path"]))
        for batch in f.iter_batches(columns=[KEY_COLUMN, column], batch_size=1 << 16):
            t = pa.table({"key": batch.column(0), "label": batch.column(1)})
            partial.append(t.group_by(["key", "label"], use_threads=False)
                           .aggregate([("key", "count")]))
    if not partial:
        return pa.table({"key": pa.array([]), "label": pa.array([]),
                         "count": pa.array([], pa.int64())})
    both = pa.concat_tables(partial, promote_options="permissive")
    counts = both.group_by(["key", "label"], use_threads=False).aggregate([("key_count", "sum")])
    out = pa.table({"key": counts.column("key"), "label": counts.column("label"),
                    "count": counts.column("key_count_sum").cast(pa.int64())})
    if len(ds) != ds.manifest["totals"]["groups"]:  # a view: only its groups
        out = out.filter(pc.is_in(out.column("key"), pa.array(ds.keys(), out["key"].type)))
    return out.sort_by([("key", "ascending"), ("label", "ascending")])


def count_matrix(counts: pa.Table) -> tuple[list[object], list[object], np.ndarray]:
    """(group keys, labels, matrix[group, label] of counts) from ``label_counts``."""
    keys_enc = pc.dictionary_encode(counts.column("key").combine_chunks())
    labels_enc = pc.dictionary_encode(counts.column("label").combine_chunks(),
                                      null_encoding="encode")  # a missing label is a label
    keys = keys_enc.dictionary.to_pylist()
    labels = labels_enc.dictionary.to_pylist()
    m = np.zeros((len(keys), len(labels)), np.int64)
    np.add.at(m, (keys_enc.indices.to_numpy(zero_copy_only=False),
                  labels_enc.indices.to_numpy(zero_copy_only=False)),
              counts.column("count").to_numpy())
    return keys, labels, m


def heterogeneity(counts: pa.Table) -> pa.Table:
    """Per group: examples, distinct labels, top label's share and the total-variation
    distance of its label distribution from the whole dataset's (0 = same, 1 = disjoint)."""
    keys, _, m = count_matrix(counts)
    sizes = m.sum(axis=1)
    if len(keys) == 0:
        return pa.table({"key": pa.array([]), "examples": pa.array([], pa.int64()),
                         "labels": pa.array([], pa.int64()), "top_share": pa.array([], pa.float64()),
                         "tv_distance": pa.array([], pa.float64())})
    dist = m / np.maximum(sizes, 1)[:, None]
    overall = m.sum(axis=0) / max(int(m.sum()), 1)
    return pa.table({
        "key": pa.array(keys),
        "examples": pa.array(sizes.astype(np.int64)),
        "labels": pa.array((m > 0).sum(axis=1).astype(np.int64)),
        "top_share": pa.array(dist.max(axis=1)),
        "tv_distance": pa.array(0.5 * np.abs(dist - overall[None, :]).sum(axis=1)),
    })


def heterogeneity_summary(per_group: pa.Table) -> pa.Table:
    """min / percentiles / max / mean of the per-group measures, plus the example-weighted
    mean total-variation distance (one number for how non-IID the grouping is)."""
    records = []
    for name in ("labels", "top_share", "tv_distance"):
        vals = per_group.column(name).to_numpy(zero_copy_only=False)
        row = {"measure": name, "groups": per_group.num_rows, **describe(vals)}
        if name != "labels":
            row["total"] = float("nan")  # a sum of shares or distances means nothing
        records.append(row)
    sizes = per_group.column("examples").to_numpy(zero_copy_only=False).astype(np.float64)
    tv = per_group.column("tv_distance").to_numpy(zero_copy_only=False)
    weighted = float((tv * sizes).sum() / sizes.sum()) if sizes.sum() else 0.0
    records.append({"measure": "tv_distance (weighted by examples)",
                    "groups": per_group.num_rows, **{k: float("nan") for k in describe(tv)},
                    "mean": weighted})
    return pa.Table.from_pylist(records)
