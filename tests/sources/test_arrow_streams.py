"""Objects with __arrow_c_stream__ (Polars, DuckDB, a RecordBatchReader) are sources,
read through pa.RecordBatchReader.from_stream, with the real libraries."""

from __future__ import annotations

import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import SourceError
from fedgroups.sources import make_source

USERS = ["a", "b", "a", "c", "a"]


def _groups(path: str) -> dict:
    ds = fg.open(path)
    return {k: [r["n"] for r in ds.group(k)] for k in ds.keys()}


EXPECTED = {"a": [0, 2, 4], "b": [1], "c": [3]}


def test_a_polars_dataframe(tmp_path):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"user": USERS, "n": list(range(5))})
    src = make_source(df)
    assert src.description == {"kind": "arrow-stream", "type": "polars.DataFrame"}
    assert src.schema.field("user").type == pa.string()  # Polars' string_view, made plain
    report = fg.build(df, "field:user", tmp_path / "out", progress=False)
    assert _groups(report.path) == EXPECTED


def test_a_polars_lazyframe(tmp_path):
    pl = pytest.importorskip("polars")
    lf = pl.DataFrame({"user": USERS, "n": list(range(5))}).lazy().filter(pl.col("n") < 4)
    report = fg.build(lf, "field:user", tmp_path / "out", progress=False)
    assert _groups(report.path) == {"a": [0, 2], "b": [1], "c": [3]}


def test_a_duckdb_relation(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    rel = con.sql("select * from (values ('a', 0), ('b', 1), ('a', 2), ('c', 3), ('a', 4)) "
                  "t(user, n)")
    report = fg.build(rel, "field:user", tmp_path / "out", progress=False)
    assert _groups(report.path) == EXPECTED
    assert report.manifest["source"]["type"].startswith("duckdb.")


def test_a_record_batch_reader_in_several_batches(tmp_path):
    table = pa.table({"user": USERS, "n": list(range(5))})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))
    report = fg.build(reader, "field:user", tmp_path / "out", progress=False)
    assert _groups(report.path) == EXPECTED
    assert report.manifest["totals"]["examples"] == 5


def test_an_empty_stream_is_an_error():
    schema = pa.schema([("user", pa.string())])
    with pytest.raises(SourceError, match="RecordBatchReader has no rows"):
        make_source(pa.RecordBatchReader.from_batches(schema, []))


def test_a_stream_is_read_once():
    src = make_source(pa.RecordBatchReader.from_batches(
        pa.schema([("user", pa.string())]), [pa.record_batch({"user": ["a"]})]))
    assert sum(b.num_rows for b in src.read(0)) == 1
    with pytest.raises(SourceError, match="read only once"):
        list(src.read(0))
