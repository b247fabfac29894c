"""Group.to_hf / GroupedDataset.to_hf give datasets.Dataset objects with the right rows."""

from __future__ import annotations

import pytest

import fedgroups as fg

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "ds"
    rows = [{"user": f"u{i % 5}", "text": f"t{i}", "n": i} for i in range(50)]
    fg.build(rows, "field:user", out, num_partitions=2, workers=1, progress=False)
    return fg.open(out)


def test_group_to_hf_is_that_group_in_order(ds):
    d = ds.group("u2").to_hf()
    assert isinstance(d, datasets.Dataset)
    assert d.column_names == ["user", "text", "n"]
    assert list(d["n"]) == list(range(2, 50, 5))
    assert ds.group("u2").to_hf(columns=["n"]).column_names == ["n"]


def test_dataset_to_hf_keys_in_given_order_with_key_column(ds):
    d = ds.to_hf(["u3", "u0"])
    assert d.column_names == ["__group__", "user", "text", "n"]
    assert list(d["__group__"]) == ["u3"] * 10 + ["u0"] * 10
    assert list(d["n"]) == list(range(3, 50, 5)) + list(range(0, 50, 5))
    assert len(ds.to_hf()) == 50
    assert list(ds.subset(["u1"]).to_hf()["__group__"]) == ["u1"] * 10


def test_dataset_to_hf_names_a_missing_key(ds):
    with pytest.raises(KeyError, match="u9"):
        ds.to_hf(["u9"])
    assert len(ds.to_hf([])) == 0


def test_streamed_and_split_groups_convert_too(ds):
    """Groups from a stream (rows decoded ahead) and from split_examples (some rows)."""
    streamed = {g.key: list(g.to_hf()["n"]) for g in ds.groups(seed=3)}
    assert streamed == {f"u{k}": list(range(k, 50, 5)) for k in range(5)}
    parts = ds.group("u1").split_examples({"train": 0.6, "test": 0.4})
    assert list(parts["train"].to_hf()["n"]) == [1, 6, 11, 16, 21, 26]
    assert list(parts["test"].to_hf()["n"]) == [31, 36, 41, 46]
