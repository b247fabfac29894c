"""Sources as people pass them: hf:// URLs, pandas DataFrames, python:MODULE:FUNCTION."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.errors import SettingError
from fedgroups.sources import make_source


def test_hf_url_is_read_as_files_not_as_a_hub_dataset_name(tmp_path, monkeypatch):
    """``hf://datasets/...`` goes through fsspec like gs://, not to ``hf:NAME`` (where it
    was taken for the dataset name ``//datasets/...``). An in-memory filesystem stands in
    for the Hub's, registered under ``hf``."""
    pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeHub(MemoryFileSystem):
        protocol = "hf"
        store: dict = {}  # its own store, not the shared memory:// one
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path):
            return super()._strip_protocol(path.removeprefix("hf://"))

    monkeypatch.setitem(sys.modules["fsspec.registry"]._registry, "hf", FakeHub)
    fs = FakeHub()
    table = pa.table({"user": ["a", "b", "a"], "text": ["x", "y", "z"]})
    with fs.open("/datasets/someone/chats/data/train-0.parquet", "wb") as f:
        pq.write_table(table, f)
    url = "hf://datasets/someone/chats/data/*.parquet"
    assert make_source(url).description["kind"] == "files"
    fg.build(url, "field:user", tmp_path / "out", workers=1, progress=False)
    ds = fg.open(tmp_path / "out")
    assert [r["text"] for r in ds.group("a")] == ["x", "z"]


class _Routed(Exception):
    pass


def test_hf_name_still_goes_to_the_hub_source(monkeypatch):
    import fedgroups.sources.huggingface as hf

    def hub(spec, *args, **kwargs):
        raise _Routed(spec)

    monkeypatch.setattr(hf, "hf_source", hub)
    with pytest.raises(_Routed, match="hf:someone/chats"):
        make_source("hf:someone/chats")


def test_pandas_dataframe_source_keeps_columns_and_a_meaningful_index(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"user": ["a", "b", "a"], "n": [1, 2, 3]})
    fg.build(df, "field:user", tmp_path / "plain", workers=1, progress=False)
    ds = fg.open(tmp_path / "plain")
    assert ds.schema.names == ["user", "n"]
    assert [r["n"] for r in ds.group("a")] == [1, 3]
    indexed = df.set_index(pd.Index(["r1", "r2", "r3"], name="row_id"))
    fg.build(indexed, "field:user", tmp_path / "indexed", workers=1, progress=False)
    ds = fg.open(tmp_path / "indexed")
    assert [r["row_id"] for r in ds.group("a")] == ["r1", "r3"]
    assert ds.schema.metadata is None or b"pandas" not in ds.schema.metadata


def test_python_key_module_not_importable_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    rows = [{"text": "a"}]
    with pytest.raises(SettingError, match="must be importable.*PYTHONPATH"):
        fg.build(rows, "python:nosuchmod_fg:key", tmp_path / "o", progress=False)
    (tmp_path / "mykeys_fg.py").write_text("def key(ex):\n    return ex['text']\n")
    with pytest.raises(SettingError, match=r"mykeys_fg.py is in the current directory.*"
                                           r"PYTHONPATH=\."):
        fg.build(rows, "python:mykeys_fg:key", tmp_path / "o", progress=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SettingError, match="has no function 'nokey'"):
        fg.build(rows, "python:mykeys_fg:nokey", tmp_path / "o", progress=False)
    fg.build(rows, "python:mykeys_fg:key", tmp_path / "o", workers=1, progress=False)
    assert fg.open(tmp_path / "o").keys() == ["a"]


def test_python_key_module_failing_inside_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "brokenkeys_fg.py").write_text("import nosuchdependency_fg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SettingError, match="importing module 'brokenkeys_fg' failed: "
                                           "ModuleNotFoundError.*nosuchdependency_fg"):
        fg.build([{"text": "a"}], "python:brokenkeys_fg:key", tmp_path / "o", progress=False)
