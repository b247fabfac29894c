"""Rows as dicts: exactly what ``RecordBatch.to_pylist()`` gives, for every column type."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.format import rows
from fedgroups.format.rows import column_values, to_dicts


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(st.none(), values), max_size=30)


COLUMNS: list[tuple[pa.DataType, st.SearchStrategy[list[Any]]]] = [
    (pa.int8(), _nullable(st.integers(-128, 127))),
    (pa.int64(), _nullable(st.integers(-(2**63), 2**63 - 1))),
    (pa.uint64(), _nullable(st.integers(0, 2**64 - 1))),
    (pa.uint16(), st.lists(st.integers(0, 2**16 - 1), max_size=30)),
    (pa.int32(), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=30)),
    (pa.float64(), _nullable(st.floats(allow_nan=True))),
    (pa.float32(), st.lists(st.floats(width=32, allow_nan=True), max_size=30)),
    (pa.float16(), st.lists(st.floats(width=16, allow_nan=False), max_size=30)),
    (pa.bool_(), _nullable(st.booleans())),
    (pa.bool_(), st.lists(st.booleans(), max_size=30)),
    (pa.string(), _nullable(st.text())),
    (pa.large_string(), _nullable(st.text())),
    (pa.binary(), _nullable(st.binary())),
    (pa.large_binary(), st.lists(st.binary(), max_size=30)),
    (pa.binary(3), _nullable(st.binary(min_size=3, max_size=3))),
    (pa.list_(pa.int32()), _nullable(st.lists(st.integers(-5, 5), max_size=4))),
    (pa.struct([("a", pa.string())]), _nullable(st.fixed_dictionaries({"a": st.text()}))),
    (pa.timestamp("us"), _nullable(st.datetimes(dt.datetime(1970, 1, 1),
                                                dt.datetime(2100, 1, 1)))),
    (pa.decimal128(10, 2), _nullable(st.decimals(-(10**7), 10**7, places=2,
                                                 allow_nan=False, allow_infinity=False))),
    (pa.dictionary(pa.int8(), pa.string()), _nullable(st.sampled_from(["x", "y", "z"]))),
]


@pytest.fixture(autouse=True)
def _numpy_for_short_columns_too(monkeypatch):
    monkeypatch.setattr(rows, "_NUMPY_ROWS", 2)  # test data is short: exercise both paths


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(COLUMNS))), st.data())
def test_a_column_converts_like_to_pylist(which, data):
    typ, values = COLUMNS[which]
    vals = data.draw(values)
    if pa.types.is_decimal(typ):
        vals = [None if v is None else decimal.Decimal(v) for v in vals]
    arr = pa.array(vals, typ)
    lo = data.draw(st.integers(0, len(arr)))  # slices have an offset into their buffers
    arr = arr.slice(lo, data.draw(st.integers(0, len(arr) - lo)))
    got, want = column_values(arr), arr.to_pylist()
    assert _same(got, want), (typ, got, want)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(COLUMNS))), max_size=6),
       st.lists(st.text(max_size=4), min_size=6, max_size=6), st.integers(0, 12), st.data())
def test_a_batch_converts_like_to_pylist(which, names, rows, data):
    # names may repeat, be empty, or hold quotes and braces: the row builder is generated
    arrays = []
    for i in which:
        typ, values = COLUMNS[i]
        vals = data.draw(st.lists(st.sampled_from(data.draw(values) or [None]),
                                  min_size=rows, max_size=rows))
        if pa.types.is_decimal(typ):
            vals = [None if v is None else decimal.Decimal(v) for v in vals]
        arrays.append(pa.array(vals, typ))
    batch = pa.RecordBatch.from_arrays(arrays, names=names[:len(which)]) if which else \
        pa.RecordBatch.from_pydict({})
    got, want = to_dicts(batch), batch.to_pylist()
    assert _same(got, want)


def test_awkward_column_names():
    names = ["a'b", 'c"d', "{e}", "f\\g", "", "h\ni", "\u00e9t\u00e9"]
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2])] * len(names), names=names)
    assert to_dicts(batch) == batch.to_pylist()
    many = [f"c{i}" for i in range(300)]  # past the generated builder's column limit
    wide = pa.RecordBatch.from_arrays([pa.array(["v"])] * len(many), names=many)
    assert to_dicts(wide) == wide.to_pylist()
