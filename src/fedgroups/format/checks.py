"""Checks shared by the build (before it publishes), the reader (on open) and ``verify``.

Each function returns what is wrong in words, naming no file: the caller adds the file and
what to do. They read nothing from disk.

- :func:`schema_difference`: a shard's schema against the manifest's as Parquet gives it
  back (:func:`as_read_from_parquet`): a renamed column, a changed type, a column too many
  or missing;
- :func:`index_problems`: the index against itself and the manifest (part numbers, row
  ranges inside their shards, keys strictly sorted, totals);
- :func:`tiling_problems`: each shard's rows covered by exactly one part each (the build
  knows every shard's rows; a reader checks this row group by row group, see
  reader/tiling.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedgroups.format.spec import KEY_TYPES


def as_read_from_parquet(schema: pa.Schema) -> pa.Schema:
    """The schema Arrow reads back from a Parquet file written with ``schema``: what a
    shard's schema is compared with (a few types do not survive Parquet: ``date64`` is
    read back as ``date32``)."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, schema).close()  # a file of no rows (write_table imports pandas)
    return pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema_arrow


def schema_difference(found: pa.Schema, expected: pa.Schema, *, found_as: str = "the shard",
                      expected_as: str = "the manifest") -> str | None:
    """The first way ``found`` differs from ``expected`` in names, order, types or
    nullability (metadata ignored), in words; None if they agree.

    >>> import pyarrow as pa
    >>> schema_difference(pa.schema([("tezt", pa.string())]), pa.schema([("text", pa.string())]))
    "the shard has column 'tezt' where the manifest has 'text'"
    """
    if found.equals(expected, check_metadata=False):
        return None
    for f, e in zip(found, expected):
        if f.name != e.name:
            return f"{found_as} has column {f.name!r} where {expected_as} has {e.name!r}"
        if f.type != e.type:
            return (f"{found_as} has column {f.name!r} of type {f.type} where {expected_as} "
                    f"has {e.type}")
        if f.nullable != e.nullable:
            return (f"{found_as} has column {f.name!r} {'' if f.nullable else 'not '}nullable "
                    f"where {expected_as} has it {'' if e.nullable else 'not '}nullable")
        if not f.equals(e, check_metadata=False):
            return f"{found_as} has column {f.name!r} as {f} where {expected_as} has {e}"
    if len(found) > len(expected):
        return f"{found_as} has a column {found.field(len(expected)).name!r} {expected_as} has not"
    if len(found) < len(expected):
        return f"{found_as} has no column {expected.field(len(found)).name!r}, {expected_as} has"
    return f"{found_as}'s schema differs from {expected_as}'s"


def key_type_problem(key_type: pa.DataType, manifest_key: Mapping[str, Any],
                     what: str = "the index's keys") -> str | None:
    """Does ``key_type`` (of the index's keys, or the shards' key column) match the
    manifest's ``key.type``?"""
    name = manifest_key.get("type") if isinstance(manifest_key, Mapping) else None
    want = KEY_TYPES.get(name) if isinstance(name, str) else None
    if want is None:
        return f"the manifest's key.type {name!r} is not one of {', '.join(KEY_TYPES)}"
    if key_type != want:
        return f"{what} are of type {key_type} but the manifest's key.type is {name!r}"
    return None


def index_problems(*, part: np.ndarray, rows: np.ndarray, shard: np.ndarray,
                   first: np.ndarray, group_keys: pa.Array, shard_rows: Sequence[int],
                   totals: Mapping[str, Any]) -> list[str]:
    """What is inconsistent in an index (vectorised). ``part``, ``rows``, ``shard`` and
    ``first`` are its columns (int64); ``group_keys`` the key of each group (the rows of
    part 0, in order); ``shard_rows`` the manifest's rows per shard."""
    problems = []
    if len(part) and part[0] != 0:
        problems.append("the first row is not part 0 of a group")
    if len(part) > 1 and np.any((part[1:] != 0) & (part[1:] != part[:-1] + 1)):
        problems.append("part numbers are not 0, 1, 2, ... within each group")
    if np.any(rows < 1) or np.any(first < 0):
        problems.append("a part has no rows or a negative first row")
    if np.any((shard < 0) | (shard >= len(shard_rows))):
        problems.append(f"a part names a shard outside 0..{len(shard_rows) - 1}")
    else:
        sizes = np.asarray(shard_rows, dtype=np.int64)
        if np.any(first + rows > sizes[shard]):
            problems.append("a part's rows run past the end of its shard")
    n = len(group_keys)
    if n > 1 and not pc.all(pc.less(group_keys.slice(0, n - 1), group_keys.slice(1))).as_py():
        problems.append("group keys are not strictly sorted")
    groups = int(np.count_nonzero(part == 0))
    if groups != totals.get("groups", groups):
        problems.append(f"{groups} groups but the manifest says {totals['groups']}")
    examples = int(rows.sum())
    if examples != totals.get("examples", examples):
        problems.append(f"{examples} examples but the manifest says {totals['examples']}")
    return problems


def tiling_problems(*, rows: np.ndarray, shard: np.ndarray, first: np.ndarray,
                    shard_rows: Sequence[int]) -> list[str]:
    """Do the parts, sorted by (shard, first row), cover every shard's rows exactly once?"""
    sizes = np.asarray(shard_rows, dtype=np.int64)
    if np.any((shard < 0) | (shard >= len(sizes))):
        return []  # index_problems says so
    order = np.lexsort((first, shard))
    s, lo, hi = shard[order], first[order], first[order] + rows[order]
    new_shard = np.ones(len(s), dtype=bool)
    new_shard[1:] = s[1:] != s[:-1]
    # each part starts where the one before it in the same shard stopped, or at row 0
    expected_lo = np.where(new_shard, 0, np.concatenate([[0], hi[:-1]]))
    bad = np.flatnonzero(lo != expected_lo)
    if len(bad):
        i = int(bad[0])
        return [f"shard {int(s[i])}: a part starts at row {int(lo[i])} where row "
                f"{int(expected_lo[i])} was expected (the parts do not tile the shard)"]
    covered = np.zeros(len(sizes), dtype=np.int64)
    last = np.ones(len(s), dtype=bool)
    last[:-1] = s[1:] != s[:-1]
    covered[s[last]] = hi[last]
    short = np.flatnonzero(covered != sizes)
    if len(short):
        k = int(short[0])
        return [f"shard {k}: its parts cover {int(covered[k])} rows, the shard has "
                f"{int(sizes[k])}"]
    return []
