"""NumPy numbers to Arrow and back without pyarrow importing pandas.

pyarrow imports pandas (if it is installed) the first time a process converts values
between Python/NumPy and Arrow: ``pa.array(ndarray or list)`` and ``pa.scalar`` (also a
Python number given to a compute function) ask its pandas shim whether the value is a
pandas object, and ``Array.to_numpy`` / ``np.asarray(arrow)`` run the converter that
``to_pandas`` uses, which looks up pandas' NaT. That import was ~0.25 s of a 0.65 s
100-example build. The build's own conversions are of plain numbers (row numbers,
ordinals, counts, booleans), which these functions move through the Arrow buffers
directly; anything else is handed to pyarrow as before.

>>> import numpy as np, pyarrow as pa
>>> from_numpy(np.array([3, 1], np.int64), pa.int32()).to_pylist()
[3, 1]
>>> to_numpy(pa.chunked_array([from_numpy(np.array([True, False]))])).tolist()
[True, False]
>>> scalar(0, pa.int32()), scalar(None, pa.string())
(<pyarrow.Int32Scalar: 0>, <pyarrow.StringScalar: None>)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def from_numpy(values: np.ndarray, type: pa.DataType | None = None) -> pa.Array:
    """``pa.array(values, type)`` for a 1-d array of numbers or booleans: a view of the
    numbers (a packed copy of booleans), cast safely to ``type`` when that differs."""
    if values.ndim != 1 or values.dtype.kind not in "biuf" or not values.dtype.isnative:
        return pa.array(values, type)
    if values.dtype.kind == "b":
        natural: pa.DataType = pa.bool_()
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
    else:
        natural = pa.from_numpy_dtype(values.dtype)
        data = pa.py_buffer(np.ascontiguousarray(values))
    out = pa.Array.from_buffers(natural, len(values), [None, data])
    return out if type is None or type == natural else out.cast(type)


def _numpy_dtype(t: pa.DataType) -> np.dtype | None:
    """The NumPy dtype of a boolean, integer or floating-point Arrow type, else None."""
    if pa.types.is_boolean(t):
        return np.dtype(bool)
    kind = ("i" if pa.types.is_signed_integer(t) else "u" if pa.types.is_unsigned_integer(t)
            else "f" if pa.types.is_floating(t) else None)
    return np.dtype(f"{kind}{t.bit_width // 8}") if kind else None


def to_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``np.asarray(arr)`` for booleans or numbers without nulls (numbers in one chunk: a
    read-only view); other types and arrays with nulls go through pyarrow as before."""
    dtype = _numpy_dtype(arr.type)
    if dtype is None or arr.null_count:
        return np.asarray(arr)
    if isinstance(arr, pa.ChunkedArray):
        parts = [to_numpy(c) for c in arr.chunks]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)
    if len(arr) == 0:
        return np.zeros(0, dtype)
    data = arr.buffers()[1]
    if dtype.kind == "b":  # bits, least significant first
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=arr.offset + len(arr),
                             bitorder="little")
        return bits[arr.offset:].astype(bool)
    return np.frombuffer(data, dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def scalar(value: bool | int | float | None, type: pa.DataType) -> pa.Scalar:
    """``pa.scalar(value, type)`` for a number, a boolean or None (a value that does not
    fit ``type`` raises)."""
    if value is None:
        return pa.nulls(1, type)[0]
    return from_numpy(np.array([value]), type)[0]
