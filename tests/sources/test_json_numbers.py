"""JSON Lines numbers keep their value: one type per column, from a pass over every file,
whatever rows a parse block happens to hold."""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.errors import SourceError
from fedgroups.sources import json_types, make_source, textio


@pytest.fixture
def small_blocks(monkeypatch):
    """Many pieces and parse blocks, so that the big numbers come late, alone."""
    monkeypatch.setattr(textio, "BLOCK_BYTES", 512)
    monkeypatch.setattr(json_types, "JSON_BLOCK_BYTES", 256)


def _write(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _values(src, column: str) -> list:
    return [v for u in range(src.num_units) for b in src.read(u)
            for v in b.column(column).to_pylist()]


BIG = [9007199254740993, 9223372036854775809]  # 2**53 + 1 and 2**63 + 1


def test_big_integers_after_the_first_block_stay_exact(tmp_path, small_blocks):
    path = _write(tmp_path / "n.jsonl",
                  [{"u": "a", "n": i} for i in range(300)] + [{"u": "b", "n": n} for n in BIG])
    src = make_source(path)
    assert src.schema.field("n").type == pa.uint64()
    assert src.estimated_rows == 302
    assert _values(src, "n")[-2:] == BIG
    out = fg.build(path, "field:u", tmp_path / "out", progress=False).path
    assert fg.verify(out) == []
    written = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out").rglob(
        "*.parquet")) if "index" not in p.name)
    assert sorted(written.column("n").to_pylist())[-2:] == BIG


def test_int64_when_every_integer_fits(tmp_path, small_blocks):
    path = _write(tmp_path / "n.jsonl", [{"n": -i} for i in range(300)] + [{"n": BIG[0]}])
    src = make_source(path)
    assert src.schema.field("n").type == pa.int64()
    assert _values(src, "n")[-1] == BIG[0]


def test_negative_and_beyond_int64_is_an_exact_decimal(tmp_path, small_blocks):
    path = _write(tmp_path / "n.jsonl", [{"n": -i} for i in range(300)] + [{"n": BIG[1]}])
    src = make_source(path)
    assert src.schema.field("n").type == pa.decimal128(38, 0)
    assert _values(src, "n")[-1] == Decimal(BIG[1])


def test_the_type_is_one_for_all_files(tmp_path, small_blocks):
    small = _write(tmp_path / "a.jsonl", [{"n": i} for i in range(50)])
    big = _write(tmp_path / "b.jsonl", [{"n": BIG[1]}])
    src = make_source([small, big])
    assert src.schema.field("n").type == pa.uint64()
    assert _values(src, "n") == [*range(50), BIG[1]]


def test_floats_only_where_a_number_is_written_as_one(tmp_path, small_blocks):
    path = _write(tmp_path / "n.jsonl", [{"i": k, "f": k} for k in range(300)]
                  + [{"i": 7, "f": 2.0}])
    src = make_source(path)
    assert src.schema.field("i").type == pa.int64()
    assert src.schema.field("f").type == pa.float64()


def test_a_float_column_with_an_integer_no_double_holds_is_an_error(tmp_path, small_blocks):
    path = _write(tmp_path / "n.jsonl", [{"x": k + 0.5} for k in range(300)]
                  + [{"x": BIG[0]}])
    with pytest.raises(SourceError, match=r"n\.jsonl, line 301: column 'x' holds the integer "
                                          r"9007199254740993.*cannot hold exactly"):
        make_source(path)


def test_a_column_of_numbers_and_text_names_the_lines(tmp_path, small_blocks):
    path = _write(tmp_path / "n.jsonl", [{"x": k} for k in range(300)]
                  + [{"x": "seven"}] * 300)
    with pytest.raises(SourceError, match=r"n\.jsonl, lines? \d+.*(incompatible|changed from)"):
        make_source(path)


def test_csv_keeps_big_integers_as_written(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("u,n\n" + "".join(f"a,{i}\n" for i in range(300))
                    + "".join(f"b,{n}\n" for n in BIG) + "b,2.5\n")
    src = make_source(str(path))
    assert src.schema.field("n").type == pa.string()
    assert _values(src, "n")[-3:] == [str(BIG[0]), str(BIG[1]), "2.5"]


def test_numbers_inside_lists_and_structs_stay_exact(tmp_path, small_blocks):
    records = [{"m": {"ids": [i, i + 1], "s": 0.5}, "l": [[i]]} for i in range(200)]
    records.append({"m": {"ids": [BIG[1]], "s": 1}, "l": [[BIG[0]]]})
    src = make_source(_write(tmp_path / "n.jsonl", records))
    assert src.schema.field("m").type == pa.struct(
        [("ids", pa.list_(pa.uint64())), ("s", pa.float64())])
    assert src.schema.field("l").type == pa.list_(pa.list_(pa.int64()))
    assert _values(src, "m")[-1] == {"ids": [BIG[1]], "s": 1.0}
    assert _values(src, "l")[-1] == [[BIG[0]]]
    bad = _write(tmp_path / "bad.jsonl", [{"m": {"x": [0.5]}}] * 200 + [{"m": {"x": [BIG[0]]}}])
    with pytest.raises(SourceError, match=r"bad\.jsonl, line 201: column 'm\.x\[\]' holds the "
                                          r"integer 9007199254740993"):
        make_source(bad)
