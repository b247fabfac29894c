"""NumPy views of groups: dicts of arrays, batches, and padded fixed-shape cohorts.

Cohorts are what JAX-style training loops want: ``k`` groups at a time, each padded (or
cut) to ``max_examples`` rows, with a boolean mask, so every step has the same shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.reader.dataset import Group


def column_to_numpy(col: pa.Array | pa.ChunkedArray, *, max_length: int | None = None,
                    pad_value: Any = 0) -> np.ndarray:
    """One Arrow column as a numpy array.

    Numbers and booleans become numeric arrays (nulls are an error); strings become object
    arrays; fixed-size lists (``fixed_size_list<float32, 64>``) become ``(n, 64)`` arrays
    as they are (nested ones ``(n, a, b)``); variable-length lists become
    ``(n, max_length)`` arrays padded with ``pad_value`` and cut at ``max_length``
    (required for them). A ``max_length`` given for a fixed-size list pads or cuts it too.

    >>> column_to_numpy(pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32(), 2))).shape
    (2, 2)
    >>> column_to_numpy(pa.array([[1, 2, 3], [4]]), max_length=2).tolist()
    [[1, 2], [4, 0]]
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_fixed_size_list(t) and max_length is None:
        return _fixed_size_to_numpy(col)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if max_length is None:
            raise SettingError(f"list column of {t} needs max_length= to become an array")
        values = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
        offsets = np.asarray(col.offsets) if not pa.types.is_fixed_size_list(t) else \
            np.arange(len(col) + 1) * t.list_size
        lengths = np.minimum(np.diff(offsets), max_length)
        out = np.full((len(col), max_length), pad_value, dtype=values.dtype)
        rows = np.repeat(np.arange(len(col)), lengths)
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, within] = values[np.repeat(offsets[:-1] - offsets[0], lengths) + within]
        return out
    if col.null_count and not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise SettingError(f"column of {t} has {col.null_count} nulls; fill them first")
    return col.to_numpy(zero_copy_only=False)


def _fixed_size_to_numpy(col: pa.FixedSizeListArray) -> np.ndarray:
    """``(n, size, ...)``: the flat values (this slice's, via ``flatten``) reshaped."""
    if col.null_count:
        raise SettingError(f"column of {col.type} has {col.null_count} null lists; "
                           "fill them first")
    values = column_to_numpy(col.flatten())  # (n * size, ...); recurses into nested lists
    return values.reshape(len(col), col.type.list_size, *values.shape[1:])


def batch_to_numpy(batch: pa.RecordBatch | pa.Table, *,
                   max_lengths: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """A record batch as ``{column: array}``."""
    lengths = dict(max_lengths or {})
    return {name: column_to_numpy(batch.column(i), max_length=lengths.get(name))
            for i, name in enumerate(batch.schema.names)}


def group_arrays(group: Group, columns: Sequence[str] | None = None, *,
                 max_lengths: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """The whole group as ``{column: array}`` (reads it all into memory)."""
    return batch_to_numpy(group.to_arrow(columns), max_lengths=max_lengths)


def group_batches(group: Group, batch_size: int, columns: Sequence[str] | None = None, *,
                  max_lengths: Mapping[str, int] | None = None,
                  ) -> Iterator[dict[str, np.ndarray]]:
    """The group as ``{column: array}`` batches of ``batch_size`` rows (last one shorter)."""
    for b in group.batches(batch_size, columns):
        yield batch_to_numpy(b, max_lengths=max_lengths)


@dataclass(frozen=True)
class Cohort:
    """``k`` groups padded to the same shapes.

    ``arrays[c]`` has shape ``(k, max_examples, ...)``; ``mask`` is ``(k, max_examples)``,
    True where a real example sits; ``num_examples`` is each group's true size (before the
    cut at ``max_examples``); ``keys`` holds None for padding groups.
    """

    keys: list[Any]
    arrays: dict[str, np.ndarray]
    mask: np.ndarray
    num_examples: np.ndarray


def cohorts(groups: Iterable[Group], k: int, max_examples: int, *,
            columns: Sequence[str], max_lengths: Mapping[str, int] | None = None,
            pad_value: Any = 0, drop_remainder: bool = False) -> Iterator[Cohort]:
    """Yield cohorts of ``k`` groups, each padded or cut to ``max_examples`` rows.

    Only the first ``max_examples`` rows of a group are read. The last cohort is padded
    with empty groups (mask all False) unless ``drop_remainder``. Numeric (or fixed-length
    list, via ``max_lengths``) columns only: the point is fixed shapes.
    """
    if k < 1 or max_examples < 1:
        raise SettingError(f"k and max_examples must be positive, got {k}, {max_examples}")
    pending: list[tuple[Any, dict[str, np.ndarray], int]] = []
    for g in groups:
        rows: list[dict[str, np.ndarray]] = []
        held = 0
        for b in g.batches(max_examples, columns):
            rows.append(batch_to_numpy(b, max_lengths=max_lengths))
            held += b.num_rows
            if held >= max_examples:
                break
        arrays = {c: np.concatenate([r[c] for r in rows])[:max_examples] for c in columns} \
            if rows else {}
        pending.append((g.key, arrays, g.num_examples))
        if len(pending) == k:
            yield _pad(pending, k, max_examples, columns, pad_value)
            pending = []
    if pending and not drop_remainder:
        yield _pad(pending, k, max_examples, columns, pad_value)


def _pad(items: list[tuple[Any, dict[str, np.ndarray], int]], k: int, max_examples: int,
         columns: Sequence[str], pad_value: Any) -> Cohort:
    template = next((a for _, a, _ in items if a), None)
    if template is None:
        raise SettingError("every group in the cohort is empty; cannot infer shapes")
    arrays = {}
    for c in columns:
        proto = template[c]
        if proto.dtype == object:
            raise SettingError(f"column {c!r} is not numeric; cohorts need fixed-shape arrays")
        out = np.full((k, max_examples, *proto.shape[1:]), pad_value, dtype=proto.dtype)
        for i, (_, a, _) in enumerate(items):
            if a:
                out[i, :len(a[c])] = a[c]
        arrays[c] = out
    mask = np.zeros((k, max_examples), dtype=bool)
    for i, (_, a, _) in enumerate(items):
        if a:
            mask[i, :len(a[columns[0]])] = True
    sizes = np.zeros(k, dtype=np.int64)
    sizes[:len(items)] = [n for _, _, n in items]
    keys = [key for key, _, _ in items] + [None] * (k - len(items))
    return Cohort(keys, arrays, mask, sizes)
