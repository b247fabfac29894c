"""TensorFlow adapter (skipped when TensorFlow is not installed)."""

from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")


def test_dataset_of_group_datasets(ads):
    from fedgroups.adapters.tensorflow import to_tf_dataset

    outer = to_tf_dataset(ads, columns=["i", "text"], seed=0)
    seen = {}
    for key_ds in outer:
        rows = list(key_ds.as_numpy_iterator())
        key = rows[0]["text"].decode().split()[1]
        seen[f"u{int(key):03d}"] = [r["i"] for r in rows]
    assert sorted(seen) == ads.keys()
    assert all(v == list(range(len(v))) for v in seen.values())


def test_groups_come_from_the_stream_in_order_and_by_key_out_of_order(ads, monkeypatch):
    from fedgroups.adapters.tensorflow import to_tf_dataset

    view = ads.subset(ads.keys()[:15])  # TF spends ~0.1 s per inner dataset iterated
    expect = {k: [r["i"] for r in ads[k]] for k in view.keys()}
    calls = []
    real = type(ads).group
    monkeypatch.setattr(type(ads), "group", lambda self, key: calls.append(key) or
                        real(self, key))
    outer = to_tf_dataset(view, columns=["i"], seed=3)
    for _ in range(2):  # two passes: each restarts the stream
        got = [[int(r["i"]) for r in inner.as_numpy_iterator()] for inner in outer]
        assert got == [expect[k] for k in view.groups(seed=3).keys()]
    assert calls == []  # in order: all from the stream, none by random access
    inners = list(outer)
    for inner in reversed(inners):  # out of order: found ahead, or read by key
        rows = [int(r["i"]) for r in inner.as_numpy_iterator()]
        assert rows in expect.values()
    assert calls  # the last groups of the order were not ahead of the first ones


def test_fixed_size_lists_are_fixed_shape_tensors(fixed_ds):
    from fedgroups.adapters.tensorflow import to_tf_dataset
    from tests.adapters.conftest import EMB, emb_of

    outer = to_tf_dataset(fixed_ds.subset(fixed_ds.keys()[:3]), columns=["i", "emb"], seed=0)
    assert outer.element_spec.element_spec["emb"].shape == (EMB,)
    rows = [r for inner in outer for r in inner.as_numpy_iterator()]
    assert rows and all(r["emb"].dtype == "float32" and (r["emb"] == emb_of(int(r["i"]))).all()
                        for r in rows)
