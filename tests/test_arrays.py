"""fedgroups.arrays gives what pyarrow's own conversions give: values, types, nulls."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fedgroups.arrays import from_numpy, scalar, to_numpy

DTYPES = (np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.float32, np.float64)
TYPES = (None, pa.int64(), pa.int32(), pa.uint64(), pa.float64())


def _values() -> list[np.ndarray]:
    out = [np.arange(9, dtype=d) for d in DTYPES]
    out += [np.array([True, False, True, True, False, False, True, False, True]),
            np.zeros(0, np.int64), np.zeros(0, bool), np.arange(20)[::3], np.array([-1, 2])]
    return out


@pytest.mark.parametrize("values", _values(), ids=lambda v: f"{v.dtype}x{len(v)}")
@pytest.mark.parametrize("type", TYPES, ids=str)
def test_from_numpy_is_pa_array(values: np.ndarray, type: pa.DataType | None) -> None:
    try:
        want = pa.array(values, type)
    except pa.ArrowInvalid:  # e.g. -1 as uint64: the same error
        with pytest.raises(pa.ArrowInvalid):
            from_numpy(values, type)
        return
    got = from_numpy(values, type)
    assert got.type == want.type and got.equals(want)


@pytest.mark.parametrize("values", _values(), ids=lambda v: f"{v.dtype}x{len(v)}")
def test_to_numpy_is_np_asarray(values: np.ndarray) -> None:
    arr = pa.array(values)
    cases = [arr, arr.slice(1), pa.chunked_array([arr]), pa.chunked_array([], arr.type),
             pa.chunked_array([arr.slice(0, 2), arr.slice(2)]), pa.chunked_array([arr.slice(1)])]
    for case in cases:
        want, got = np.asarray(case), to_numpy(case)
        assert got.dtype == want.dtype and np.array_equal(got, want), case


def test_to_numpy_leaves_nulls_and_other_types_to_pyarrow() -> None:
    for arr in (pa.array([1, None, 3]), pa.array([True, None]), pa.array(["a", "b"]),
                pa.chunked_array([pa.array([1]), pa.array([None], pa.int64())])):
        want, got = np.asarray(arr), to_numpy(arr)
        assert got.dtype == want.dtype
        assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")


@pytest.mark.parametrize(("value", "type"), [(True, pa.bool_()), (0, pa.int64()),
                                             (0, pa.int32()), (7, pa.uint64()),
                                             (1.5, pa.float64()), (None, pa.string()),
                                             (None, pa.int64())])
def test_scalar_is_pa_scalar(value: object, type: pa.DataType) -> None:
    want, got = pa.scalar(value, type), scalar(value, type)  # type: ignore[arg-type]
    assert got.type == want.type and got.equals(want) and got.is_valid == want.is_valid
