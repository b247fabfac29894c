"""JAX adapter (skipped when jax is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

jnp = pytest.importorskip("jax.numpy")


def test_jax_cohorts_are_jax_arrays(ads):
    from fedgroups.adapters.jax import jax_cohorts

    c = next(jax_cohorts(ads.groups(seed=1), 4, 6, columns=["i", "y"]))
    assert isinstance(c.arrays["y"], type(jnp.zeros(1)))
    assert c.arrays["i"].shape == (4, 6) and c.mask.dtype == jnp.bool_
    # a masked mean: what a training loop would compute
    mean = (c.arrays["y"] * c.mask).sum(axis=1) / np.maximum(c.mask.sum(axis=1), 1)
    assert np.allclose(np.asarray(mean), [ads[k].to_arrow(["y"])["y"][0].as_py() for k in c.keys])
