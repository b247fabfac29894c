"""A decoded row group is checked against the index's prediction of every row's key."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.errors import CorruptDatasetError
from fedgroups.reader.index import IndexArrays
from fedgroups.reader.tiling import PhysicalIndex, check_row_group


def _index(sizes: list[int], shards: list[int]) -> tuple[IndexArrays, list[list[str]]]:
    """Groups g0, g1, ... of ``sizes`` rows, one part each, laid out shard after shard in
    key order (as the writer does); also every shard's key column."""
    n = len(sizes)
    keys = [f"g{i:04d}" for i in range(n)]
    first, rows_in = [], [0] * (max(shards) + 1)
    for size, s in zip(sizes, shards):
        first.append(rows_in[s])
        rows_in[s] += size
    columns: list[list[str]] = [[] for _ in rows_in]
    for k, size, s in zip(keys, sizes, shards):
        columns[s] += [k] * size
    table = pa.table({"key": keys, "part": [0] * n, "shard": shards, "first_row": first,
                      "num_rows": sizes, "num_bytes": sizes, "num_words": sizes})
    return IndexArrays.from_index(table), columns


layouts = st.lists(st.tuples(st.integers(1, 30), st.integers(0, 2)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(layouts, st.data())
def test_row_groups_of_a_consistent_shard_pass(layout, data):
    a, columns = _index([n for n, _ in layout], [s for _, s in layout])
    phys = a.physical
    for s, col in enumerate(columns):
        if not col:
            continue
        start = data.draw(st.integers(0, len(col) - 1))
        stop = data.draw(st.integers(start + 1, len(col)))
        check_row_group(phys, a.keys, "shard", s, start, stop, pa.array(col[start:stop]))
        # as a stream's scan reads it: dictionary-encoded (checked run by run)
        check_row_group(phys, a.keys, "shard", s, start, stop,
                        pa.array(col[start:stop]).dictionary_encode())


@settings(max_examples=200, deadline=None)
@given(layouts, st.data(), st.booleans())
def test_any_wrong_row_is_caught(layout, data, dictionary):
    a, columns = _index([n for n, _ in layout], [s for _, s in layout])
    s = data.draw(st.sampled_from([i for i, c in enumerate(columns) if c]))
    col = list(columns[s])
    row = data.draw(st.integers(0, len(col) - 1))
    wrong = data.draw(st.sampled_from(["zzz", *sorted(set(col))]))  # none, or another's
    if col[row] == wrong:
        return
    col[row] = wrong
    keys = pa.array(col).dictionary_encode() if dictionary else pa.array(col)
    with pytest.raises(CorruptDatasetError, match=f"row {row} should hold group"):
        check_row_group(a.physical, a.keys, "shard", s, 0, len(col), keys)


def test_a_dictionary_holding_a_key_twice_is_compared_row_by_row():
    a, columns = _index([2, 3], [0, 0])
    # g0000 g0000 g0001 g0001 g0001, with g0001 at two dictionary entries
    keys = pa.DictionaryArray.from_arrays(pa.array([0, 0, 1, 2, 1], pa.int32()),
                                          pa.array(["g0000", "g0001", "g0001"]))
    check_row_group(a.physical, a.keys, "shard", 0, 0, 5, keys)
    wrong = pa.DictionaryArray.from_arrays(pa.array([0, 0, 1, 0, 1], pa.int32()),
                                           pa.array(["g0000", "g0001", "g0001"]))
    with pytest.raises(CorruptDatasetError, match="row 3 should hold group 'g0001'"):
        check_row_group(a.physical, a.keys, "shard", 0, 0, 5, wrong)


def test_parts_that_do_not_tile_the_shard_are_caught():
    a, columns = _index([5, 5, 5], [0, 0, 0])
    first = a.part_first.copy()
    first[1] = 6  # a gap at row 5, an overlap at 10
    shifted = IndexArrays(a.starts, a.stops, a.sizes, a.bytes, a.location, a.words, a.keys,
                          a.int_keys, a.part_shard, first, a.part_rows)
    with pytest.raises(CorruptDatasetError, match="do not cover them exactly once"):
        check_row_group(shifted.physical, shifted.keys, "shard", 0, 0, 15,
                        pa.array(columns[0]))


def test_physical_order_sorts_parts_by_shard_then_row():
    a, _ = _index([3, 2, 4, 1], [1, 0, 1, 0])
    p: PhysicalIndex = a.physical
    assert p.shard_lo.tolist() == [0, 2, 4]
    assert p.group.tolist() == [1, 3, 0, 2] and p.first.tolist() == [0, 2, 0, 3]
    assert np.array_equal(p.stop - p.first, [2, 1, 3, 4])


def test_adjacent_parts_of_one_group_make_one_run():
    table = pa.table({"key": ["a", "a", "b"], "part": [0, 1, 0], "shard": [0, 0, 0],
                      "first_row": [0, 3, 5], "num_rows": [3, 2, 3], "num_bytes": [1, 1, 1],
                      "num_words": [1, 1, 1]})
    a = IndexArrays.from_index(table)
    col = ["a"] * 5 + ["b"] * 3
    check_row_group(a.physical, a.keys, "shard", 0, 0, 8, pa.array(col))
    check_row_group(a.physical, a.keys, "shard", 0, 2, 7, pa.array(col[2:7]))
    with pytest.raises(CorruptDatasetError, match="row 4 should hold group 'a'"):
        check_row_group(a.physical, a.keys, "shard", 0, 0, 8, pa.array(col[:4] + ["b"] * 4))
