"""NumPy adapter: arrays, batches and padded cohorts."""

from __future__ import annotations

import numpy as np
import pytest

from fedgroups.adapters import numpy as fgnp
from fedgroups.errors import SettingError


def test_group_arrays_and_batches(ads):
    g = ads["u005"]
    arrays = fgnp.group_arrays(g, ["i", "y", "tokens"], max_lengths={"tokens": 4})
    assert arrays["i"].tolist() == list(range(g.num_examples))
    assert arrays["y"].dtype == np.float64 and (arrays["y"] == 5.0).all()
    assert arrays["tokens"].shape == (g.num_examples, 4)
    assert arrays["tokens"][2].tolist() == [5, 2, 7, 0]
    batches = list(fgnp.group_batches(g, 5, ["i"]))
    assert np.concatenate([b["i"] for b in batches]).tolist() == arrays["i"].tolist()
    with pytest.raises(SettingError, match="max_length"):
        fgnp.group_arrays(g, ["tokens"])


def test_cohorts_pad_cut_and_mask(ads):
    stream = list(ads.groups(seed=0))
    out = list(fgnp.cohorts(stream, 8, 10, columns=["i", "y"]))
    assert len(out) == -(-len(ads) // 8)
    seen = [k for c in out for k in c.keys if k is not None]
    assert seen == [g.key for g in stream]
    for c in out:
        assert c.arrays["i"].shape == (8, 10) and c.mask.shape == (8, 10)
        for j, key in enumerate(c.keys):
            n = ads[key].num_examples if key is not None else 0
            assert c.num_examples[j] == n
            assert c.mask[j].sum() == min(n, 10)
            assert c.arrays["i"][j][c.mask[j]].tolist() == list(range(min(n, 10)))
            assert (c.arrays["i"][j][~c.mask[j]] == 0).all()
    dropped = list(fgnp.cohorts(stream, 8, 10, columns=["i"], drop_remainder=True))
    assert len(dropped) == len(ads) // 8
    with pytest.raises(SettingError, match="not numeric"):
        next(fgnp.cohorts(stream, 2, 3, columns=["text"]))


def test_fixed_size_lists_are_arrays_without_settings(fixed_ds):
    from tests.adapters.conftest import EMB, emb_of

    for key in fixed_ds.keys():
        arrays = fgnp.group_arrays(fixed_ds[key], ["i", "emb"])
        emb = arrays["emb"]
        assert emb.shape == (len(arrays["i"]), EMB) and emb.dtype == np.float32
        assert all((row == emb_of(int(i))).all() for i, row in zip(arrays["i"], emb))
    batches = list(fgnp.group_batches(fixed_ds["g04"], 2, ["emb"]))  # slices of a batch
    assert [b["emb"].shape for b in batches] == [(2, EMB), (2, EMB), (1, EMB)]
    # variable-length lists still need max_lengths
    with pytest.raises(SettingError, match="max_length"):
        fgnp.group_arrays(fixed_ds["g04"], ["tokens"])
    c = next(fgnp.cohorts(fixed_ds.groups(seed=0), 3, 4, columns=["i", "emb"]))
    assert c.arrays["emb"].shape == (3, 4, EMB)
    for j in range(3):
        for i, row, real in zip(c.arrays["i"][j], c.arrays["emb"][j], c.mask[j]):
            assert (row == (emb_of(int(i)) if real else 0)).all()


def test_nested_and_sliced_fixed_size_lists():
    import pyarrow as pa

    inner = pa.list_(pa.int32(), 2)
    col = pa.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]],
                   pa.list_(inner, 2))
    assert fgnp.column_to_numpy(col).shape == (3, 2, 2)
    assert fgnp.column_to_numpy(col.slice(1, 1)).tolist() == [[[5, 6], [7, 8]]]
    with pytest.raises(SettingError, match="null lists"):
        fgnp.column_to_numpy(pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2)))
