"""Group-size statistics from the index alone: no pass over the examples.

The index has one row per group part with its rows, bytes and words (and tokens where a
build recorded them); summing parts per key gives every group's sizes, and percentiles of
those give the table ``fedgroups stats`` prints.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PERCENTILES = (10, 25, 50, 75, 90, 99)
# index column → the name of the measure in the tables
MEASURES = {"num_rows": "examples", "num_bytes": "bytes", "num_words": "words",
            "num_tokens": "tokens"}


def as_dataset(dataset: Any) -> Any:
    """A GroupedDataset, opening it if given a path."""
    if isinstance(dataset, (str, os.PathLike)):
        from fedgroups.reader.dataset import open as open_dataset
        return open_dataset(dataset)
    if not hasattr(dataset, "index") or not hasattr(dataset, "manifest"):
        raise TypeError(f"expected a grouped dataset or its path, got {type(dataset).__name__}")
    return dataset


def group_table(dataset: Any) -> pa.Table:
    """One row per group, in key order: key, examples, bytes, words (, tokens), parts."""
    ds = as_dataset(dataset)
    index: pa.Table = ds.index
    present = [c for c in MEASURES if c in index.column_names]
    if index.num_rows == 0:
        return pa.table({"key": index.column("key"),
                         **{MEASURES[c]: pa.array([], pa.int64()) for c in present},
                         "parts": pa.array([], pa.int64())})
    agg = index.group_by("key", use_threads=False).aggregate(
        [(c, "sum") for c in present] + [("part", "count")])
    table = pa.table({"key": agg.column("key"),
                      **{MEASURES[c]: agg.column(f"{c}_sum").cast(pa.int64()) for c in present},
                      "parts": agg.column("part_count").cast(pa.int64())})
    table = table.sort_by("key")
    if len(ds) != table.num_rows:  # a view (subset) of the dataset
        table = table.filter(pc.is_in(table.column("key"), pa.array(ds.keys(), table["key"].type)))
    return table


def describe(values: np.ndarray) -> dict[str, float]:
    """min, p10 … p99, max, mean and total of a vector of per-group sizes."""
    if len(values) == 0:
        return {"min": 0, **{f"p{p}": 0 for p in PERCENTILES}, "max": 0, "mean": 0.0, "total": 0}
    v = np.asarray(values, dtype=np.float64)
    q = np.percentile(v, PERCENTILES)
    return {"min": float(v.min()), **{f"p{p}": float(x) for p, x in zip(PERCENTILES, q)},
            "max": float(v.max()), "mean": float(v.mean()), "total": float(v.sum())}


def summary(dataset: Any) -> pa.Table:
    """Per-group size statistics: one row per measure (examples, bytes, words, tokens).

    Columns: measure, groups, min, p10, p25, p50, p75, p90, p99, max, mean, total.
    ``summary(ds).to_pandas()`` gives a DataFrame.

    Examples
    --------
    >>> import fedgroups as fg
    >>> rows = [{"user": u, "text": "a b"} for u in "aab"]
    >>> _ = fg.build(rows, "field:user", "/tmp/fg-stats-doctest", overwrite=True, progress=False)
    >>> summary("/tmp/fg-stats-doctest").column("max").to_pylist()[0]
    2.0
    """
    groups = group_table(dataset)
    records = []
    for name in MEASURES.values():
        if name in groups.column_names:
            vals = groups.column(name).to_numpy(zero_copy_only=False)
            records.append({"measure": name, "groups": groups.num_rows, **describe(vals)})
    return pa.Table.from_pylist(records)


def _fmt(x: float) -> str:
    if x is None or math.isnan(x):
        return "-"
    if abs(x) >= 1e6:
        for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
            if abs(x) >= div:
                return f"{x / div:.1f}{unit}"
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def _fmt_bytes(x: float) -> str:
    """Bytes as ``fedgroups info`` writes them (KiB, MiB, ...)."""
    from fedgroups.terminal import human_bytes
    return "-" if x is None or math.isnan(x) else human_bytes(x)


def format_summary(table: pa.Table) -> str:
    """The summary as aligned text, one line per measure."""
    cols = [c for c in table.column_names if c not in ("measure", "groups")]
    rows = table.to_pylist()
    header = ["per group"] + cols
    body = [[r["measure"]] + [(_fmt_bytes if r["measure"] == "bytes" else _fmt)(r[c])
                              for c in cols] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in
                       enumerate(zip(row, widths))) for row in [header, *body]]
    groups = rows[0]["groups"] if rows else 0
    return f"groups: {groups:,}\n" + "\n".join(lines)
