"""The dataset card: ``.fedgroups/README.md``, written with every build.

A Hugging Face dataset card: YAML front matter whose ``configs:`` names the data files
(so the Hub, or ``datasets.load_dataset`` on a folder holding the card as ``README.md``,
reads the examples and nothing else), then what the dataset holds and how it was built,
in prose and tables. It is written into the metadata folder, not at the root, because a
non-Parquet file at the root stops ``pyarrow.dataset`` and pandas from reading the root
(docs/format.md); to publish on the Hub, copy it to ``OUT/README.md``.

The card is documentation: it is not checksummed and no reader depends on it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.arrays import to_numpy
from fedgroups.format.layout import CARD_FILE, DATA_GLOB
from fedgroups.terminal import human_bytes

_BYTE_SETTINGS = ("memory_limit", "shard_bytes")


def _size_line(index: pa.Table | None) -> str | None:
    """Examples per group: min, median, 90th percentile, max (from the index's parts)."""
    if index is None or index.num_rows == 0:
        return None
    rows = to_numpy(index.column("num_rows")).astype(np.int64, copy=False)
    starts = np.flatnonzero(to_numpy(index.column("part")) == 0)
    sizes = np.add.reduceat(rows, starts)
    p50, p90 = np.percentile(sizes, [50, 90])
    return (f"min {sizes.min():,}, median {p50:,.0f}, 90th percentile {p90:,.0f}, "
            f"max {sizes.max():,}")


def _source_text(src: dict[str, Any]) -> str:
    if src.get("kind") == "files":
        paths = src.get("paths") or []
        shown = ", ".join(f"`{p}`" for p in paths[:3])
        more = f" and {src['num_files'] - len(paths[:3])} more" \
            if src.get("num_files", len(paths)) > len(paths[:3]) else ""
        return f"{shown}{more} ({', '.join(src.get('formats', []))})"
    name = src.get("spec") or src.get("name") or src.get("kind", "?")
    return f"`{name}`" + (f", split `{src['split']}`" if src.get("split") else "")


def card_text(manifest: dict[str, Any], index: pa.Table | None = None) -> str:
    """The card for a dataset with this manifest (``index``: for group-size percentiles)."""
    t, key, b = manifest["totals"], manifest["key"], manifest.get("build", {})
    cols = "\n".join(f"| `{c['name']}` | {c['type']} |" for c in manifest["schema"]["columns"])
    sizes = _size_line(index)
    rows = [
        ("groups", f"{t['groups']:,}"),
        ("examples", f"{t['examples']:,}"),
        ("examples per group", sizes or "—"),
        ("uncompressed bytes", f"{human_bytes(t['bytes'])} ({t['bytes']:,})"),
        ("words", f"{t['words']:,}" + (f" (column `{manifest['text_column']}`)"
                                       if manifest.get("text_column") else "")),
        ("groups split in parts", f"{t['parts'] - t['groups']:,}"),
        ("examples dropped on purpose", f"{t['dropped_examples']:,}"),
        ("shard files", f"{t['shards']:,}"),
    ]
    stats = "\n".join(f"| {k} | {v} |" for k, v in rows)
    group_cols = manifest.get("group_columns") or []
    settings = ", ".join(
        f"{k} {human_bytes(v) if k in _BYTE_SETTINGS and isinstance(v, int) else v}"
        for k, v in b.items()) or "—"
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: '{DATA_GLOB}'
tags:
- fedgroups
- federated-learning
---

# Examples grouped by `{key.get('spec')}`

A grouped dataset written by fedgroups {manifest.get('fedgroups_version', '')} (format
version {manifest['format_version']}, {manifest.get('created', '')}). Every example belongs to
one group; the group's key is in the column `{key['column']}`, and a group's examples are
contiguous in one shard file (a very large group: in consecutive ones).

- **Source**: {_source_text(manifest.get('source', {}))}
- **Key**: `{key.get('spec')}` ({key['type']}){', group columns ' + ', '.join(f'`{c}`' for c in group_cols) if group_cols else ''}
- **Build**: {settings}

| statistic | value |
|---|---|
{stats}

## Columns

| column | type |
|---|---|
{cols}

## Reading it

With fedgroups (groups by key, streamed, resumable):

```python
import fedgroups as fg
ds = fg.open("OUT")
group = ds.group(ds.keys()[0])
```

With any Parquet reader, point it at the folder (`OUT`) or at `OUT/{DATA_GLOB}`:
the shard files are the only Parquet files; the group index and the manifest are in
`.fedgroups/`, which data globs skip.

```python
import datasets, duckdb, pandas, polars
datasets.load_dataset("OUT")["train"]
pandas.read_parquet("OUT")
duckdb.sql("SELECT {key['column']}, count(*) FROM 'OUT/*.parquet' GROUP BY 1")
polars.scan_parquet("OUT/*.parquet")
spark.read.parquet("OUT")
```

This card is `.fedgroups/README.md`; copy it to `OUT/README.md` to publish the folder on
the Hugging Face Hub (a root `README.md` is a file `pyarrow.dataset("OUT")` and
`pandas.read_parquet("OUT")` cannot read, so fedgroups does not write one).
"""


def write_card(root: str, manifest: dict[str, Any], index: pa.Table | None = None) -> str:
    """Write the card into ``root``'s metadata folder; return its path."""
    path = os.path.join(root, CARD_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(card_text(manifest, index))
    return path
