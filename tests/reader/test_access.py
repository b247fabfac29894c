"""Random access by key, whole-group reads, and splits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import SettingError


def test_group_by_key_has_its_examples_in_source_order(small):
    key = small.keys()[17]
    g = small.group(key)
    assert small[key].key == key and key in small and "nope" not in small
    rows = list(g)
    assert len(rows) == g.num_examples == len(g) > 0
    assert [r["i"] for r in rows] == list(range(g.num_examples))
    assert g.num_bytes > 0 and g.num_words > 0
    t = g.to_arrow()
    assert t.num_rows == g.num_examples and t.column_names == small.schema.names


def test_missing_key_suggests_close_matches(small):
    with pytest.raises(KeyError, match=r"did you mean .u00017."):
        small.group("u00017x")
    with pytest.raises(KeyError, match="no group 5"):
        small.group(5)


def test_batches_are_exact_and_columns_checked(small):
    g = small.group(max(small.keys(), key=lambda k: small[k].num_examples))
    sizes = [b.num_rows for b in g.batches(7, columns=["i", "x"])]
    assert sum(sizes) == g.num_examples and all(s == 7 for s in sizes[:-1])
    assert pa.concat_tables(pa.Table.from_batches([b]) for b in g.batches(7)).equals(
        g.to_arrow())
    with pytest.raises(KeyError, match="no column 'zzz'"):
        list(g.batches(4, columns=["zzz"]))
    with pytest.raises(ValueError):
        list(g.batches(0))


def test_group_larger_than_a_shard_reads_all_parts(parted_path):
    ds = fg.open(parted_path)
    g = ds["big"]
    assert len(g.parts) > 1
    assert [r["i"] for r in g] == list(range(3000))
    assert [b.num_rows for b in g.batches(1000)] == [1000, 1000, 1000]


def test_split_groups_is_exact_disjoint_and_deterministic(small):
    a = small.split_groups({"train": 0.9, "test": 0.1}, seed=4)
    b = small.split_groups({"train": 0.9, "test": 0.1}, seed=4)
    assert {k: v.keys() for k, v in a.items()} == {k: v.keys() for k, v in b.items()}
    assert len(a["train"]) == 270 and len(a["test"]) == 30
    assert not set(a["train"].keys()) & set(a["test"].keys())
    assert a["train"].num_examples + a["test"].num_examples == small.num_examples
    other = small.split_groups({"train": 0.9, "test": 0.1}, seed=5)
    assert other["test"].keys() != a["test"].keys()
    test_key = a["test"].keys()[0]
    assert a["test"][test_key].key == test_key
    with pytest.raises(KeyError):
        a["train"].group(test_key)
    nested = a["train"].split_groups({"x": 0.5}, seed=0)["x"]
    assert len(nested) == 135 and set(nested.keys()) <= set(a["train"].keys())
    with pytest.raises(SettingError, match="sum to"):
        small.split_groups({"a": 0.7, "b": 0.7})


def test_split_examples_partitions_a_group(small):
    g = small.group(max(small.keys(), key=lambda k: small[k].num_examples))
    parts = g.split_examples({"train": 0.75, "test": 0.25})
    ordered = [r["i"] for r in parts["train"]] + [r["i"] for r in parts["test"]]
    assert ordered == list(range(g.num_examples))  # seed=None: past then future
    shuffled = g.split_examples({"train": 0.75, "test": 0.25}, seed=0)
    tr = [r["i"] for r in shuffled["train"]]
    te = [r["i"] for r in shuffled["test"]]
    assert sorted(tr + te) == list(range(g.num_examples)) and tr != ordered[:len(tr)]
    assert len(tr) == shuffled["train"].num_examples
    assert shuffled["test"].to_arrow().num_rows == len(te)
    again = g.split_examples({"train": 0.75, "test": 0.25}, seed=0)
    assert [r["i"] for r in again["test"]] == te
    sub = shuffled["train"].split_examples({"a": 0.5, "b": 0.5})
    assert [r["i"] for r in sub["a"]] + [r["i"] for r in sub["b"]] == tr


def test_split_examples_across_parts(parted_path):
    g = fg.open(parted_path)["big"]
    parts = g.split_examples({"train": 0.5, "test": 0.5}, seed=1)
    idx = np.array([r["i"] for r in parts["test"]])
    assert len(idx) == 1500 and (np.diff(idx) > 0).all()


def test_views_and_positions(small):
    sub = small.subset(small.keys()[:5])
    assert len(sub) == 5 and sub.group_at(0).key == small.keys()[0]
    assert [g.key for g in sub] == small.keys()[:5]
    with pytest.raises(IndexError):
        sub.group_at(5)
