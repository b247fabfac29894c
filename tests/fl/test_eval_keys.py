"""Evaluation clients are a seeded uniform sample of the eval dataset's keys, not the first
keys in sorted order (which sort by topic, language or site)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("torch")

from fedgroups.fl.simulation import eval_keys


@given(n=st.integers(0, 300), k=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_a_sample_of_distinct_keys_in_key_order(n: int, k: int, seed: int) -> None:
    keys = tuple(f"k{i:04d}" for i in range(n))
    got = eval_keys(keys, k, seed)
    assert len(got) == min(n, k)
    assert len(set(got)) == len(got) and set(got) <= set(keys)
    assert got == sorted(got)
    assert got == eval_keys(keys, k, seed)  # a pure function of the seed


def test_not_the_first_keys_and_seed_dependent() -> None:
    keys = tuple(f"k{i:04d}" for i in range(1000))
    a, b = eval_keys(keys, 20, 0), eval_keys(keys, 20, 1)
    assert a != list(keys[:20])
    assert a != b
    # Uniform over the whole range: some chosen keys lie in every half.
    assert any(x < "k0500" for x in a) and any(x >= "k0500" for x in a)
