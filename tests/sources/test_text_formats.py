"""Text formats keep every byte's meaning: CSV values stay text, non-UTF-8 is named or
counted, lines end at \\n only, and errors name one line of the file."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import SettingError, SourceError
from fedgroups.sources import json_types, make_source, textio


def _rows(src) -> list[dict]:
    return [r for u in range(src.num_units) for b in src.read(u) for r in b.to_pylist()]


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t")])
def test_csv_values_keep_their_text(tmp_path, fmt, sep):
    path = tmp_path / f"k.{fmt}"
    lines = ["user,n,flag,when", "007,1,true,2020-01-01", "7,2.50,false,", "0007,,NA,x",
             "' 7',-0,null,1e3"]
    path.write_text("\n".join(s.replace(",", sep) for s in lines) + "\n")
    src = make_source(str(path))
    assert all(f.type == pa.string() for f in src.schema)
    rows = _rows(src)
    assert [r["user"] for r in rows] == ["007", "7", "0007", "' 7'"]
    assert [r["n"] for r in rows] == ["1", "2.50", "", "-0"]
    assert [r["flag"] for r in rows] == ["true", "false", "NA", "null"]
    assert [r["when"] for r in rows] == ["2020-01-01", "", "x", "1e3"]
    report = fg.build(str(path), "field:user", tmp_path / "out", progress=False)
    assert report.manifest["totals"]["groups"] == 4  # 007, 7, 0007 and ' 7' stay apart
    assert report.manifest["key"]["type"] == "string"


def test_csv_quoted_newline_is_data(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('user,text\na,"two\nlines"\nb,"comma, inside"\n')
    assert [r["text"] for r in _rows(make_source(str(path)))] == ["two\nlines", "comma, inside"]


def test_text_lines_end_at_newline_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"one\rstill one\r\ntwo\nthree")
    assert [r["text"] for r in _rows(make_source(str(path)))] == [
        "one\rstill one", "two", "three"]


BAD = {
    "jsonl": (b'{"u": "a", "t": "fine"}\n' * 3 + b'{"u": "b", "t": "caf\xe9"}\n'),
    "csv": b"u,t\n" + b"a,fine\n" * 2 + b"b,caf\xe9\n",
    "tsv": b"u\tt\n" + b"a\tfine\n" * 2 + b"b\tcaf\xe9\n",
    "txt": b"fine\n" * 3 + b"caf\xe9\n",
}


@pytest.mark.parametrize("ext", sorted(BAD))
def test_non_utf8_is_an_error_naming_file_and_line(tmp_path, ext):
    path = tmp_path / f"bad.{ext}"
    path.write_bytes(BAD[ext])
    with pytest.raises(SourceError, match=rf"bad\.{ext}, line 4: .*not UTF-8.*"
                                          r"--encoding-errors replace"):
        _rows(make_source(str(path)))


@pytest.mark.parametrize("ext", sorted(BAD))
def test_non_utf8_replaced_and_counted(tmp_path, ext):
    path = tmp_path / f"bad.{ext}"
    path.write_bytes(BAD[ext] + BAD[ext].splitlines(keepends=True)[-1])  # two bad lines
    src = make_source(str(path), encoding_errors="replace")
    values = [v for r in _rows(src) for v in r.values()]
    assert values.count("caf\ufffd") == 2 and "caf\ufffd" in values
    assert src.replacements.replaced == 2 and src.replacements.lines == 2


def test_encoding_errors_setting_is_checked(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(SettingError, match="encoding_errors 'ignore'"):
        make_source(str(tmp_path / "a.txt"), encoding_errors="ignore")


def test_line_numbers_are_exact_past_the_first_block(tmp_path, monkeypatch):
    monkeypatch.setattr(textio, "BLOCK_BYTES", 64)
    good = "".join(json.dumps({"u": f"u{i}", "t": "x" * (i % 7)}) + "\n" for i in range(300))
    (tmp_path / "a.jsonl").write_text(good + '{"u": "z", "t": }\n' + good)
    with pytest.raises(SourceError, match=r"a\.jsonl, line 301: not valid JSON") as e:
        _rows(make_source(str(tmp_path / "a.jsonl")))
    assert "row" not in str(e.value)
    (tmp_path / "b.jsonl").write_text(good + '{"u": "z", "t": 5}\n')  # a type that changes
    with pytest.raises(SourceError, match=r"b\.jsonl, line 301: .*changed from string"):
        _rows(make_source(str(tmp_path / "b.jsonl")))
    (tmp_path / "c.txt").write_bytes(good.encode() * 2 + b"\xff\n")
    with pytest.raises(SourceError, match=r"c\.txt, line 601: "):
        _rows(make_source(str(tmp_path / "c.txt")))
    (tmp_path / "d.csv").write_bytes(b"u,t\n" + b"a,b\n" * 400 + b"\xc3\n")
    with pytest.raises(SourceError, match=r"d\.csv, line 402: "):
        _rows(make_source(str(tmp_path / "d.csv")))


def test_a_utf8_sequence_cut_by_a_block_edge_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(textio, "BLOCK_BYTES", 7)
    text = "u,t\n" + "".join(f"a,é{'ü' * i}€\n" for i in range(20))
    (tmp_path / "e.csv").write_text(text)
    rows = _rows(make_source(str(tmp_path / "e.csv")))
    assert [r["t"] for r in rows] == [f"é{'ü' * i}€" for i in range(20)]


def test_a_jsonl_line_longer_than_a_block(tmp_path, monkeypatch):
    monkeypatch.setattr(textio, "BLOCK_BYTES", 1 << 10)
    monkeypatch.setattr(json_types, "JSON_BLOCK_BYTES", 1 << 10)  # and than a parse block
    big = "w " * 50_000
    (tmp_path / "a.jsonl").write_text(json.dumps({"u": "a", "t": "s"}) + "\n" +
                                      json.dumps({"u": "b", "t": big}) + "\n")
    assert [r["t"] for r in _rows(make_source(str(tmp_path / "a.jsonl")))] == ["s", big]


def test_truncated_gzip_is_named(tmp_path):
    data = gzip.compress(b"".join(b'{"u": "a", "t": "%d"}\n' % i for i in range(5000)))
    (tmp_path / "a.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"a\.jsonl\.gz.*truncated or damaged"):
        _rows(make_source(str(tmp_path / "a.jsonl.gz")))


@pytest.mark.parametrize("name", ["__ordinal__", "__group__"])
def test_reserved_column_names_are_refused(tmp_path, name):
    with pytest.raises(SourceError, match=f"column '{name}' has a name fedgroups reserves"):
        make_source(pa.table({"u": ["a"], name: [1]}))


def test_replacements_from_parallel_workers_reach_the_manifest(tmp_path):
    for i in range(4):  # four files: the local engine reads them in forked workers
        (tmp_path / f"p{i}.jsonl").write_bytes(b'{"u": "a", "t": "x\xff"}\n' * (i + 1) +
                                               b'{"u": "b", "t": "fine"}\n')
    report = fg.build(str(tmp_path / "*.jsonl"), "field:u", tmp_path / "out", workers=2,
                      encoding_errors="replace", progress=False)
    source = report.manifest["source"]
    assert source["encoding_errors"] == "replace"
    assert source["replaced_utf8_sequences"] == 10 and source["lines_with_replacements"] == 10
    with pytest.raises(SourceError, match=r"p0\.jsonl, line 1"):
        fg.build(str(tmp_path / "*.jsonl"), "field:u", tmp_path / "strict", progress=False)
