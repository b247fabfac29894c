"""Standard readers pointed at a dataset's root read the examples and nothing else.

docs/format.md ("Reading with other tools") has the table these tests check. Each test
compares per-group counts with fedgroups' own, so a reader that also counted the index
(rows of one group per part) or the manifest would fail here.
"""

from __future__ import annotations

import collections
import os
import shutil

import pytest

from tests.interop.conftest import N

INDEX_COLUMNS = {"part", "shard", "first_row", "num_rows"}


def _check(group_column: list, columns: list[str], counts: dict[str, int]) -> None:
    assert not INDEX_COLUMNS & set(columns), f"index columns read as data: {columns}"
    assert len(group_column) == N
    assert dict(collections.Counter(group_column)) == counts


def test_layout_keeps_non_examples_out_of_data_globs(built):
    """Only the shards are *.parquet, at the root; everything else is in a dot-folder."""
    files = sorted(os.path.relpath(os.path.join(d, f), built)
                   for d, _, fs in os.walk(built) for f in fs)
    data = [f for f in files if f.endswith(".parquet")]
    assert data and all("/" not in f and f.startswith("shard-") for f in data)
    assert all(f.startswith(".fedgroups/") for f in files if f not in data), files
    assert ".fedgroups/index.pq" in files and ".fedgroups/manifest.json" in files


def test_pyarrow_dataset_on_root(built, counts):
    import pyarrow.dataset as pads

    table = pads.dataset(str(built), format="parquet").to_table()
    _check(table.column("__group__").to_pylist(), table.column_names, counts)
    assert sorted(table.column("n").to_pylist()) == list(range(N))


def test_pandas_on_root(built, counts):
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(built)
    _check(df["__group__"].tolist(), list(df.columns), counts)


@pytest.mark.parametrize("pattern", ["{root}/*.parquet", "{root}/**/*.parquet", "{root}"])
@pytest.mark.parametrize("union_by_name", [False, True])
def test_duckdb_on_root(built, counts, pattern, union_by_name):
    """``**`` enters every folder, dot-folders included: the index must not be *.parquet
    (as ``index.parquet`` it was read as 7 more rows with union_by_name, silently)."""
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    source = (f"read_parquet('{pattern.format(root=built)}', "
              f"union_by_name={str(union_by_name).lower()})")
    columns = con.sql(f"SELECT * FROM {source}").columns
    _check([r[0] for r in con.sql(f"SELECT __group__ FROM {source}").fetchall()], columns,
           counts)


@pytest.mark.parametrize("pattern", ["{root}/*.parquet", "{root}/**/*.parquet"])
def test_polars_glob_on_root(built, counts, pattern):
    pl = pytest.importorskip("polars")
    df = pl.scan_parquet(pattern.format(root=built)).collect()
    _check(df["__group__"].to_list(), df.columns, counts)


def test_polars_folder_on_root_is_right_or_refuses(built, counts):
    """Polars refuses a folder holding any file not named *.parquet (the manifest), with
    a message saying to pass a glob. If a later Polars reads the folder, it must be the
    examples only; it must never count anything else."""
    pl = pytest.importorskip("polars")
    try:
        df = pl.scan_parquet(str(built)).collect()
    except pl.exceptions.PolarsError as e:
        assert "glob" in str(e)
    else:
        _check(df["__group__"].to_list(), df.columns, counts)


def test_huggingface_load_dataset_on_root(built, counts, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(str(built), cache_dir=str(tmp_path / "hf-cache"))
    assert list(ds) == ["train"]
    _check(ds["train"]["__group__"], ds["train"].column_names, counts)


def test_card_as_root_readme_for_the_hub(built, counts, tmp_path):
    """Copied to README.md (as for the Hub), the card's ``configs:`` names the data files:
    ``load_dataset`` still reads the examples only."""
    datasets = pytest.importorskip("datasets")
    hub = tmp_path / "hub"
    shutil.copytree(built, hub)
    shutil.copy(hub / ".fedgroups" / "README.md", hub / "README.md")
    ds = datasets.load_dataset(str(hub), cache_dir=str(tmp_path / "hf-cache"))
    assert list(ds) == ["train"]
    _check(ds["train"]["__group__"], ds["train"].column_names, counts)


def test_verify_names_parquet_files_a_root_reader_would_count(built, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedgroups.format.verify import verify

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    assert verify(str(copy)) == []
    pq.write_table(pa.table({"x": [1]}), copy / "notes.parquet")
    pq.write_table(pa.table({"x": [1]}), copy / ".fedgroups" / "old-index.parquet")
    problems = verify(str(copy))
    assert len(problems) == 2
    assert "notes.parquet" in problems[0] + problems[1]
    assert "old-index.parquet" in problems[0] + problems[1]
