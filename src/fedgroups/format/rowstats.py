"""Per-row sizes used for the index: uncompressed bytes and whitespace-separated words."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import scalar, to_numpy


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the data start, data bytes) of a string/binary array, no copy."""
    t = arr.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)):
        arr = arr.cast(pa.large_string())
        t = arr.type
    width = np.int64 if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else \
        np.zeros(0, np.uint8)
    start, stop = int(offsets[0]), int(offsets[-1])
    return (offsets - start).astype(np.int64), data[start:stop]


def word_counts(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Words in each string: maximal runs of bytes above 0x20 (ASCII space and control
    characters separate words). 0 for nulls. Vectorised: word starts are marked in a bit
    mask, and each row's count is a difference of prefix popcounts."""
    if isinstance(arr, pa.ChunkedArray):
        parts = [word_counts(c) for c in arr.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if len(arr) == 0:
        return np.zeros(0, np.int64)
    offsets, data = _string_parts(arr)
    if len(data) == 0:
        return np.zeros(len(arr), np.int64)
    word = data > 32
    start = np.empty(len(data), bool)
    start[0] = word[0]
    np.greater(word[1:], word[:-1], out=start[1:])  # a word byte after a separator
    heads = offsets[:-1][np.diff(offsets) > 0]  # a row's first byte may start a word
    start[heads] = word[heads]
    packed = np.packbits(start)  # position p is bit (7 - p % 8) of byte p // 8
    before = np.zeros(len(packed) + 1, np.int64)
    np.cumsum(np.bitwise_count(packed), out=before[1:])
    byte, bit = offsets >> 3, offsets & 7
    prefix = before[byte]
    partial = bit > 0  # count the first `bit` positions of the boundary byte too
    prefix[partial] += np.bitwise_count(
        packed[byte[partial]] >> (8 - bit[partial]).astype(np.uint8))
    counts = np.diff(prefix)
    if arr.null_count:
        counts[to_numpy(pc.is_null(arr))] = 0
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
            total += to_numpy(pc.fill_null(lengths, scalar(0, lengths.type)))
        elif (w := _fixed_width_bytes(t)) is not None:
            total += w
        elif n:
            total += col.nbytes // n
    return total
