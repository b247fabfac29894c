"""Where a dataset's files are, in each format version.

Version 2 (written today) keeps everything that is not examples out of every data-file
glob, so a standard reader pointed at the dataset's root reads the examples and nothing
else (docs/format.md, "Reading with other tools")::

    shard-PPPPP-SSSS.parquet     the examples: the only *.parquet files under OUT
    .fedgroups/manifest.json     written last; without it, not a dataset
    .fedgroups/index.pq          the group index (Parquet, named so no *.parquet glob
                                 picks it up: DuckDB's ** enters hidden folders)
    .fedgroups/README.md         the dataset card (copy it to OUT/README.md to publish on
                                 the Hugging Face Hub)

The shards sit at the root, as in a Spark or Hive table: ``spark.read.parquet(OUT)``
reads files at the root but not a ``data/`` subfolder (it would need
``recursiveFileLookup``), and ``OUT/*.parquet`` then works for every glob reader. The
metadata folder starts with a dot because that is the one prefix every reader skips by
rule: pyarrow, pandas, Spark and Hive skip ``.`` and ``_``; Hugging Face ``datasets``
skips ``.`` (and ``__``) but not ``_``.

Version 1 had ``manifest.json`` and ``index.parquet`` at the root beside ``shards/``;
it is still read. The index and shard paths are always taken from the manifest, so the
manifest's location is the only thing that differs between versions when reading.
"""

from __future__ import annotations

import os

from fedgroups.format.spec import INDEX_FILE, MANIFEST_FILE, META_DIR

CARD_FILE = f"{META_DIR}/README.md"

# Version 1 names (read, never written).
V1_MANIFEST_FILE = "manifest.json"
V1_INDEX_FILE = "index.parquet"
V1_SHARDS_DIR = "shards"

# Data files of a v2 dataset, relative to its root, as a glob (the card's `configs:`).
DATA_GLOB = "*.parquet"

__all__ = ["CARD_FILE", "DATA_GLOB", "INDEX_FILE", "MANIFEST_FILE", "META_DIR",
           "V1_INDEX_FILE", "V1_MANIFEST_FILE", "V1_SHARDS_DIR", "is_dataset",
           "leads_outside", "manifest_path", "stray_data_files"]


def manifest_path(root: str) -> str:
    """The manifest of the dataset at ``root``: the v2 one if present, else a v1 one if
    present, else where a v2 manifest would be (for messages naming what is missing)."""
    v2 = os.path.join(root, MANIFEST_FILE)
    if os.path.exists(v2):
        return v2
    v1 = os.path.join(root, V1_MANIFEST_FILE)
    return v1 if os.path.exists(v1) else v2


def leads_outside(root: str, rel: str) -> str | None:
    """A problem if ``rel`` (a path the manifest names, or the manifest's own) leads outside
    the dataset at ``root`` through a symbolic link (of the file or of a folder on the
    way, such as ``.fedgroups``); None if it stays inside."""
    real_root = os.path.realpath(root)
    path = os.path.join(root, rel)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        return f"{path}: leads outside the dataset (to {real}) through a symbolic link"
    return None


def is_dataset(root: str) -> bool:
    """Whether ``root`` holds a manifest of either version (not whether it is sound)."""
    return os.path.exists(manifest_path(root))


def stray_data_files(root: str, manifest: dict) -> list[str]:
    """Problems for ``verify``: ``*.parquet`` files anywhere under a v2 dataset's root (dot
    folders included, as DuckDB's ``**`` enters them) that the manifest does not list as
    shards. A reader pointed at the root would read them as examples."""
    if manifest.get("format_version", 1) < 2:
        return []  # v1 keeps index.parquet at the root by design
    listed = {os.path.normpath(s["path"]) for s in manifest["shards"]}
    problems = []
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(".parquet") and os.path.relpath(path, root) not in listed:
                problems.append(
                    f"{path}: a Parquet file that is not one of the dataset's shards; readers "
                    f"pointed at {root} (pyarrow, pandas, DuckDB, Polars, Spark, datasets) "
                    "would read it as examples: move it out of the dataset")
    return problems
