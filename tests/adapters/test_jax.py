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


def test_a_jitted_step_sees_every_example_once(ads):
    # what a JAX training loop does: one compiled function over fixed-shape cohorts
    import jax

    from fedgroups.adapters.jax import jax_cohorts

    traces = []

    @jax.jit
    def step(total, y, i, mask):
        traces.append(y.shape)  # runs while tracing only
        return total + jnp.stack([(y * mask).sum(), (i * mask).sum(), mask.sum()])

    total = jnp.zeros(3)
    keys = []
    for c in jax_cohorts(ads.groups(seed=0), 8, 32, columns=["y", "i"]):
        total = step(total, c.arrays["y"], c.arrays["i"], c.mask)
        keys += [k for k in c.keys if k is not None]
    assert traces == [(8, 32)]  # every cohort has the same shapes: compiled once
    whole = [ads[k].to_arrow(["y", "i"]) for k in ads.keys()]
    want = [sum(pa_sum(t, "y") for t in whole), sum(pa_sum(t, "i") for t in whole),
            ads.num_examples]
    assert sorted(keys) == ads.keys()  # groups are at most 23 examples: none cut
    assert np.allclose(np.asarray(total), want)


def pa_sum(table, column):
    return float(sum(table.column(column).to_pylist()))


def test_fixed_size_lists_in_jax_cohorts(fixed_ds):
    from fedgroups.adapters.jax import jax_cohorts
    from tests.adapters.conftest import EMB, emb_of

    c = next(jax_cohorts(fixed_ds.groups(seed=0), 2, 5, columns=["i", "emb"]))
    assert c.arrays["emb"].shape == (2, 5, EMB) and c.arrays["emb"].dtype == jnp.float32
    first = int(c.arrays["i"][0][0])
    assert np.array_equal(np.asarray(c.arrays["emb"][0][0]), emb_of(first))
