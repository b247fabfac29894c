"""The output is plain Parquet: pyarrow, Hugging Face datasets and DuckDB read it directly."""

from __future__ import annotations

import glob
import json

import pyarrow.dataset as pads
import pytest

import fedgroups as fg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "ds"
    rows = [{"user": f"u{i % 7}", "text": f"text number {i}", "n": i} for i in range(700)]
    fg.build(rows, "field:user", out, num_partitions=3)
    return out


def test_pyarrow_dataset_reads_shards(built):
    table = pads.dataset(str(built / "shards"), format="parquet").to_table()
    assert table.num_rows == 700
    assert sorted(table.column("n").to_pylist()) == list(range(700))
    assert set(table.column("__group__").to_pylist()) == {f"u{i}" for i in range(7)}


def test_huggingface_datasets_loads_shards(built):
    datasets = pytest.importorskip("datasets")
    files = sorted(glob.glob(str(built / "shards" / "*.parquet")))
    ds = datasets.load_dataset("parquet", data_files=files, split="train",
                               cache_dir=str(built.parent / "hf-cache"))
    assert len(ds) == 700
    assert ds.filter(lambda ex: ex["__group__"] == "u3").num_rows == 100


def test_duckdb_reads_shards_and_index(built):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    counts = dict(con.execute(
        f"SELECT __group__, count(*) FROM read_parquet('{built}/shards/*.parquet') GROUP BY 1"
    ).fetchall())
    assert counts == {f"u{i}": 100 for i in range(7)}
    index = con.execute(
        f"SELECT key, sum(num_rows) FROM read_parquet('{built}/index.parquet') GROUP BY 1"
    ).fetchall()
    assert dict(index) == counts


def test_reading_one_group_by_hand_as_docs_describe(built):
    """docs/format.md: index row → shard file, first_row, num_rows → rows with pyarrow only."""
    import pyarrow.parquet as pq

    manifest = json.loads((built / "manifest.json").read_text())
    index = pq.read_table(built / "index.parquet").to_pylist()
    row = next(r for r in index if r["key"] == "u5")
    shard = manifest["shards"][row["shard"]]["path"]
    table = pq.read_table(built / shard).slice(row["first_row"], row["num_rows"])
    assert set(table.column("__group__").to_pylist()) == {"u5"}
    assert table.column("n").to_pylist() == list(range(5, 700, 7))
