"""Every kind of source, read for real: files of each format, HF datasets, Arrow tables."""

from __future__ import annotations

import gzip
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.sources.stdlib import paragraphs

ROWS = [{"user": f"u{i % 3}", "text": f"hello {i}"} for i in range(30)]


def _expect(out) -> None:
    ds = fg.open(out)
    assert ds.keys() == ["u0", "u1", "u2"]
    got = Counter((k, ex["text"]) for k in ds.keys() for ex in ds.group(k))
    assert got == Counter((r["user"], r["text"]) for r in ROWS)


def test_jsonl_csv_tsv_parquet_and_gzip(tmp_path):
    import json

    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "a.csv").write_text("user,text\n" + "".join(f"{r['user']},{r['text']}\n"
                                                              for r in ROWS))
    (tmp_path / "a.tsv").write_text("user\ttext\n" + "".join(f"{r['user']}\t{r['text']}\n"
                                                                for r in ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.jsonl.gz", "a.csv", "a.tsv", "a.parquet"):
        fg.build(str(tmp_path / name), "field:user", tmp_path / f"out-{name}")
        _expect(tmp_path / f"out-{name}")


def test_forced_format_and_text_files(tmp_path):
    (tmp_path / "data.log").write_text("".join(f"{r['user']} {r['text']}\n" for r in ROWS))
    fg.build(str(tmp_path / "data.log"), lambda ex: ex["text"].split()[0], tmp_path / "o",
             format="text")
    ds = fg.open(tmp_path / "o")
    assert ds.keys() == ["u0", "u1", "u2"] and ds.num_examples == 30


def test_directory_source(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        pq.write_table(pa.Table.from_pylist(ROWS[i::3]), tmp_path / "in" / f"p{i}.parquet")
    fg.build(str(tmp_path / "in"), "field:user", tmp_path / "o")
    _expect(tmp_path / "o")


def test_arrow_table_and_generator(tmp_path):
    fg.build(pa.Table.from_pylist(ROWS), "field:user", tmp_path / "t")
    _expect(tmp_path / "t")
    fg.build((r for r in ROWS), "field:user", tmp_path / "g")
    _expect(tmp_path / "g")


def test_huggingface_dataset_objects_and_spec(tmp_path):
    datasets = pytest.importorskip("datasets")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "train.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"),
                               split="train", cache_dir=str(tmp_path / "cache"))
    fg.build(ds, "field:user", tmp_path / "o1", workers=2)
    _expect(tmp_path / "o1")
    fg.build(ds.to_iterable_dataset(), "field:user", tmp_path / "o2")
    _expect(tmp_path / "o2")
    (tmp_path / "local").mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "local" / "train.parquet")
    fg.build(f"hf:{tmp_path / 'local'}", "field:user", tmp_path / "o3")
    _expect(tmp_path / "o3")
    with pytest.raises(fg.FedGroupsError, match="cannot load"):
        fg.build("hf:/no/such/dataset/here", "field:user", tmp_path / "o4")


def test_stdlib_source(tmp_path):
    report = fg.build("stdlib:", "field:package", tmp_path / "s")
    ds = fg.open(tmp_path / "s")
    assert {"json", "email", "asyncio", "os"} <= set(ds.keys())
    assert report.manifest["totals"]["examples"] > 10_000
    assert all(ex["package"] == "json" for ex in ds.group("json"))


def test_paragraphs_split_on_blank_lines():
    assert paragraphs("a\nb\n\n\nc\n  \nd") == ["a\nb", "c", "d"]
    assert paragraphs("") == []


def test_remote_paths_through_fsspec(tmp_path):
    """gs://, s3:// and hf:// go through fsspec; its in-memory filesystem stands in here."""
    import json

    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("memory://bucket/data/a.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS[:15]))
    with fs.open("memory://bucket/data/b.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pylist(ROWS[15:]), f)
    fg.build(["memory://bucket/data/*.jsonl", "memory://bucket/data/*.parquet"], "field:user",
             tmp_path / "o")
    _expect(tmp_path / "o")
    with pytest.raises(fg.FedGroupsError, match="no filesystem"):
        fg.build("nosuchproto://x/y.jsonl", "field:user", tmp_path / "o2")


def test_big_parquet_file_is_read_as_several_units(tmp_path, monkeypatch):
    from fedgroups.sources import files

    monkeypatch.setattr(files, "UNIT_BYTES", 2_000)
    rows = [{"user": f"u{i % 4}", "i": i} for i in range(3000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "one.parquet", row_group_size=250)
    src = files.file_source(str(tmp_path / "one.parquet"))
    assert src.num_units > 3 and src.estimated_rows == 3000
    fg.build(str(tmp_path / "one.parquet"), "field:user", tmp_path / "o", workers=2)
    ds = fg.open(tmp_path / "o")
    for k in ds.keys():
        got = [ex["i"] for ex in ds.group(k)]
        assert got == [r["i"] for r in rows if r["user"] == k]  # source order across units

    def key(ex):
        if ex["i"] == 2222:
            raise ValueError("bad row")
        return ex["user"]

    with pytest.raises(fg.FedGroupsError, match=r"one.parquet, row 2222: .*bad row"):
        fg.build(str(tmp_path / "one.parquet"), key, tmp_path / "o2", workers=2)


def test_jsonl_row_estimate_for_the_progress_bar(tmp_path):
    import json

    from fedgroups.sources.files import file_source

    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert file_source(str(tmp_path / "a.jsonl")).estimated_rows == 30
