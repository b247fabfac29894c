"""Group columns: source columns that are constant within each group, kept in the index.

``fg.build(..., group_columns=("family", "lang"))`` records, for every group, the value of
each named column in the index as ``group_column.<name>`` (repeated on each part row of a
group), so a hierarchy (family → language → groups) is read from the index alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import from_numpy, scalar, to_numpy
from fedgroups.errors import GroupColumnError, SettingError
from fedgroups.format.spec import GROUP_COLUMN_PREFIX, KEY_COLUMN, ORDINAL_COLUMN

# "key" is the key column of ``GroupedDataset.group_table``; the others are the build's own.
RESERVED = ("key", KEY_COLUMN, ORDINAL_COLUMN)


def parse_group_columns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` (or None) → ``("a", "b")``; duplicates and blanks refused."""
    if value is None:
        return ()
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise SettingError(f"group_columns {value!r}: every name must be a non-empty string")
        if n in RESERVED:
            raise SettingError(
                f"group column {n!r} collides with a reserved column name ({', '.join(RESERVED)}); "
                "rename the column in the source")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SettingError(f"group_columns {value!r} name {dup[0]!r} twice")
    return tuple(names)


def group_fields(schema: pa.Schema, names: Sequence[str], where: str) -> list[pa.Field]:
    """The index fields for ``names`` (``group_column.<name>``), checked against the input."""
    fields = []
    for name in names:
        if name not in schema.names:
            raise SettingError(
                f"group column {name!r} does not exist in {where}; columns are: "
                f"{', '.join(n for n in schema.names if n not in RESERVED) or 'none'}")
        t = schema.field(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_nested(t):
            raise SettingError(
                f"group column {name!r} has type {t}; a group column must hold single values "
                "(strings, numbers, booleans, dates)")
        fields.append(pa.field(GROUP_COLUMN_PREFIX + name, t))
    return fields


def _plain(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Elementwise equality in which null equals null and NaN equals NaN."""
    eq = to_numpy(pc.fill_null(pc.equal(a, b), scalar(False, pa.bool_())))
    both_null = to_numpy(pc.and_(pc.is_null(a), pc.is_null(b)))
    same = eq | both_null
    if pa.types.is_floating(a.type):
        same |= to_numpy(pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)),
                                      scalar(False, pa.bool_())))
    return same


def _differ(column: str, key: Any, a: Any, b: Any) -> GroupColumnError:
    return GroupColumnError(
        f"group {key!r}: column {column!r} is not constant within the group (it holds "
        f"{a!r} and {b!r}); a group column must have one value per group — choose another "
        "column or another key")


def run_values(chunk: pa.Table, names: Sequence[str], starts: np.ndarray,
               keys: pa.Array) -> dict[str, pa.Array]:
    """Each run's value of each group column (runs start at ``starts``; keys sorted).

    Raises :class:`GroupColumnError` if a column changes within a run."""
    out: dict[str, pa.Array] = {}
    if not names:
        return out
    run_of_row = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, chunk.num_rows)))
    for name in names:
        col = _plain(chunk.column(name))
        firsts = col.take(from_numpy(starts))
        bad = np.flatnonzero(~_same(col, firsts.take(from_numpy(run_of_row))))
        if len(bad):
            row = int(bad[0])
            raise _differ(name, keys[row].as_py(), col[int(starts[run_of_row[row]])].as_py(),
                          col[row].as_py())
        out[name] = firsts
    return out


def check_continues(key: Any, before: dict[str, pa.Array], after: dict[str, pa.Array]) -> None:
    """A group that runs on from one chunk to the next keeps its values (one-row arrays)."""
    for name, a in before.items():
        b = after[name]
        if not _same(a, b)[0]:
            raise _differ(name, key, a[0].as_py(), b[0].as_py())


def group_table(index: pa.Table, first_parts: np.ndarray, available: Sequence[str],
                columns: Sequence[str] | None) -> pa.Table:
    """``key`` plus the requested group columns (plain names), one row per group.

    ``first_parts`` are the index rows (part 0) of the groups wanted, in order."""
    names = list(available) if columns is None else list(columns)
    missing = [n for n in names if n not in available]
    if missing:
        raise SettingError(
            f"no group column {missing[0]!r} in this dataset; it has "
            f"{', '.join(map(repr, available)) or 'none'} (build with --group-columns to record "
            "others)")
    rows = index.take(from_numpy(np.asarray(first_parts, dtype=np.int64)))
    return pa.table({"key": rows.column("key"),
                     **{n: rows.column(GROUP_COLUMN_PREFIX + n) for n in names}})
