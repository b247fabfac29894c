"""Bad input gets a clear error naming the file/row/key, and nothing is left half-written."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.errors import (
    KeyFunctionError,
    NotADatasetError,
    OutputExistsError,
    SettingError,
    SourceError,
)


def _nothing_written(out) -> None:
    out = str(out)
    assert not os.path.exists(out)
    parent = os.path.dirname(out)
    assert not [e for e in os.listdir(parent) if "staging" in e], os.listdir(parent)


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="nope.parquet: no such file"):
        fg.build(str(tmp_path / "nope.parquet"), "field:a", tmp_path / "o")
    _nothing_written(tmp_path / "o")


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(SourceError, match="matches no files"):
        fg.build(str(tmp_path / "*.jsonl"), "field:a", tmp_path / "o")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(SourceError, match="bad.parquet"):
        fg.build(str(bad), "field:a", tmp_path / "o")
    _nothing_written(tmp_path / "o")


def test_unknown_extension(tmp_path):
    f = tmp_path / "data.xyz"
    f.write_text("x")
    with pytest.raises(SettingError, match="--format"):
        fg.build(str(f), "field:a", tmp_path / "o")


def test_missing_column_names_the_columns(tmp_path):
    with pytest.raises(SettingError, match=r"column 'usr' does not exist.*user"):
        fg.build([{"user": "a"}], "field:usr", tmp_path / "o")
    _nothing_written(tmp_path / "o")


def test_key_function_raising_names_the_row(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text("".join(f'{{"v": {i}}}\n' for i in range(10)))

    def key(ex):
        return str(1 // (ex["v"] - 7))

    with pytest.raises(KeyFunctionError, match=r"in.jsonl, row 7: key function .*ZeroDivision"):
        fg.build(str(f), key, tmp_path / "o", workers=2)
    _nothing_written(tmp_path / "o")


def test_key_returning_none_or_bad_type(tmp_path):
    rows = [{"v": i} for i in range(5)]
    with pytest.raises(KeyFunctionError, match=r"example 3 of the iterable: .*no group"):
        fg.build(rows, lambda ex: None if ex["v"] == 3 else "g", tmp_path / "o")
    with pytest.raises(KeyFunctionError, match=r"example 0 .*returned float 0.5"):
        fg.build(rows, lambda ex: 0.5, tmp_path / "o")
    with pytest.raises(KeyFunctionError, match="mixed types"):
        fg.build(rows, lambda ex: "a" if ex["v"] else 1, tmp_path / "o")
    with pytest.raises(SettingError, match="column 'x' has type double"):
        fg.build([{"x": 1.5}], "field:x", tmp_path / "o")
    _nothing_written(tmp_path / "o")


def test_null_key_column_names_file_and_row(tmp_path):
    pq.write_table(pa.table({"u": ["a", None, "b"]}), tmp_path / "in.parquet")
    with pytest.raises(KeyFunctionError, match=r"in.parquet, row 1: .*on_missing_key"):
        fg.build(str(tmp_path / "in.parquet"), "field:u", tmp_path / "o")


def test_url_without_host(tmp_path):
    rows = [{"url": "https://ok.org/a"}, {"url": "not a url"}]
    with pytest.raises(KeyFunctionError, match="example 1"):
        fg.build(rows, "url-host:url", tmp_path / "o")


def test_schemas_disagree(tmp_path):
    pq.write_table(pa.table({"u": ["a"], "x": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"u": ["a"], "y": [1]}), tmp_path / "b.parquet")
    with pytest.raises(SourceError, match=r"schemas disagree: .*a.parquet.*b.parquet"):
        fg.build(str(tmp_path / "*.parquet"), "field:u", tmp_path / "o")
    pq.write_table(pa.table({"u": ["a"], "x": ["text"]}), tmp_path / "b.parquet")
    with pytest.raises(SourceError, match="cannot be unified"):
        fg.build(str(tmp_path / "*.parquet"), "field:u", tmp_path / "o")


def test_numeric_widening_across_files_is_fine(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"u": "a", "x": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"u": "b", "x": 2.5}\n')
    fg.build(str(tmp_path / "*.jsonl"), "field:u", tmp_path / "o")
    assert fg.open(tmp_path / "o").group("b").to_arrow().column("x").to_pylist() == [2.5]


def test_empty_inputs(tmp_path):
    with pytest.raises(SourceError, match="empty"):
        fg.build([], "field:u", tmp_path / "o")
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(SourceError, match="empty"):
        fg.build(str(tmp_path / "e.jsonl"), "field:u", tmp_path / "o")
    _nothing_written(tmp_path / "o")


def test_existing_output_is_refused_then_overwritten(tmp_path):
    fg.build([{"u": "a"}], "field:u", tmp_path / "o")
    with pytest.raises(OutputExistsError, match="overwrite"):
        fg.build([{"u": "b"}], "field:u", tmp_path / "o")
    assert fg.open(tmp_path / "o").keys() == ["a"]
    fg.build([{"u": "b"}], "field:u", tmp_path / "o", overwrite=True)
    assert fg.open(tmp_path / "o").keys() == ["b"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="not a grouped dataset"):
        fg.build([{"u": "b"}], "field:u", tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_bad_settings(tmp_path):
    with pytest.raises(SettingError, match="KEYSPEC"):
        fg.build([{"u": "a"}], "bogus:u", tmp_path / "o")
    with pytest.raises(SettingError, match="memory_limit"):
        fg.build([{"u": "a"}], "field:u", tmp_path / "o", memory_limit="lots")
    with pytest.raises(SettingError, match="too small"):
        fg.build([{"u": "a"}], "field:u", tmp_path / "o", memory_limit="10MB")
    with pytest.raises(SettingError, match="N must be a positive integer"):
        fg.build([{"u": "a"}], "iid:zero", tmp_path / "o")
    with pytest.raises(SourceError, match="example 1 of the iterable is a int, not a dict"):
        fg.build([{"u": "a"}, 5], "field:u", tmp_path / "o")
    _nothing_written(tmp_path / "o")


def test_opening_a_non_dataset(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(NotADatasetError, match="no .*manifest.json"):
        fg.open(tmp_path / "d")
