"""Per-row sizes used for the index: uncompressed bytes and whitespace-separated words."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# ASCII whitespace, as str.split() sees it for ASCII text.
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the data start, data bytes) of a string/binary array, no copy."""
    arr = arr.cast(pa.large_string()) if pa.types.is_large_string(arr.type) else arr
    width = np.int64 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) \
        else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else \
        np.zeros(0, np.uint8)
    start, stop = int(offsets[0]), int(offsets[-1])
    return (offsets - start).astype(np.int64), data[start:stop]


def word_counts(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Words (maximal runs of non-whitespace bytes) in each string; 0 for nulls."""
    if isinstance(arr, pa.ChunkedArray):
        parts = [word_counts(c) for c in arr.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if len(arr) == 0:
        return np.zeros(0, np.int64)
    offsets, data = _string_parts(arr)
    if len(data) == 0:
        return np.zeros(len(arr), np.int64)
    ws = _WS[data]
    word_start = ~ws
    word_start[1:] &= ws[:-1]
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    # A row's first byte starts a word if it is not whitespace, whatever precedes it.
    first = starts[nonempty]
    word_start[first] = ~ws[first]
    counts = np.zeros(len(arr), np.int64)
    if nonempty.any():
        counts[nonempty] = np.add.reduceat(word_start.view(np.uint8), first, dtype=np.int64)
    if arr.null_count:
        counts[np.asarray(pc.is_null(arr))] = 0
    return counts


def _fixed_width_bytes(t: pa.DataType) -> int | None:
    try:
        return max(1, t.bit_width // 8)
    except ValueError:
        return None


def row_bytes(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Uncompressed bytes of each row, summed over columns (variable-width exactly, nested
    columns apportioned evenly)."""
    n = table.num_rows
    total = np.zeros(n, np.int64)
    for col in table.columns:
        t = col.type
        if (pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t)
                or pa.types.is_large_binary(t)):
            lengths = pc.binary_length(col)
            total += np.asarray(pc.fill_null(lengths, 0), dtype=np.int64)
        elif (w := _fixed_width_bytes(t)) is not None:
            total += w
        elif n:
            total += col.nbytes // n
    return total
