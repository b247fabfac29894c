"""The format is plain Parquet + JSON: one group read by hand, as docs/format.md shows.

Readers pointed at the whole dataset folder are tested in tests/interop/.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

import fedgroups as fg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "ds"
    rows = [{"user": f"u{i % 7}", "text": f"text number {i}", "n": i} for i in range(700)]
    fg.build(rows, "field:user", out, num_partitions=3, progress=False)
    return out


def test_reading_one_group_by_hand_as_docs_describe(built):
    """docs/format.md: index row → shard file, first_row, num_rows → rows with pyarrow only."""
    manifest = json.loads((built / ".fedgroups" / "manifest.json").read_text())
    index = pq.read_table(built / manifest["index"]["path"]).to_pylist()
    row = next(r for r in index if r["key"] == "u5")
    shard = manifest["shards"][row["shard"]]["path"]
    assert shard.startswith("shard-") and shard.endswith(".parquet")
    table = pq.read_table(built / shard).slice(row["first_row"], row["num_rows"])
    assert set(table.column("__group__").to_pylist()) == {"u5"}
    assert table.column("n").to_pylist() == list(range(5, 700, 7))


def test_index_sums_match_shards_in_duckdb(built):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    counts = dict(con.execute(
        f"SELECT __group__, count(*) FROM read_parquet('{built}/*.parquet') GROUP BY 1"
    ).fetchall())
    assert counts == {f"u{i}": 100 for i in range(7)}
    index = con.execute(
        f"SELECT key, sum(num_rows) FROM read_parquet('{built}/.fedgroups/index.pq') GROUP BY 1"
    ).fetchall()
    assert dict(index) == counts


def test_card_front_matter_names_the_data_files(built):
    text = (built / ".fedgroups" / "README.md").read_text()
    front = text.split("---\n")[1]
    assert "path: '*.parquet'" in front
    assert "| groups | 7 |" in text and "| examples | 700 |" in text
    assert "min 100, median 100, 90th percentile 100, max 100" in text
