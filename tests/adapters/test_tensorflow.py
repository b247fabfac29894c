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
