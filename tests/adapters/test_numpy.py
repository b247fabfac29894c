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
