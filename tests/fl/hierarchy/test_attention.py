"""Attention aggregation and residual routing: invariants of the pure functions."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.fl.hierarchy.attention import attend, cosine_matrix, weighted_mean
from fedgroups.fl.hierarchy.residual import Residual, least_attended, offer, route

SHAPES = {"a": (3,), "b": (2, 2)}


@st.composite
def key_sets(draw: st.DrawFn, min_rows: int = 1) -> tuple[list[dict], list[float], list[dict],
                                                           list[float]]:
    n = draw(st.integers(min_rows, 5))
    e = draw(st.integers(0, 3))
    seed = draw(st.integers(0, 2**31))
    g = torch.Generator().manual_seed(seed)
    sets = [{k: torch.randn(s, generator=g) for k, s in SHAPES.items()} for _ in range(n + e)]
    w = draw(st.lists(st.floats(0.1, 100.0), min_size=n + e, max_size=n + e))
    return sets[:n], w[:n], sets[n:], w[n:]


def _close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return all(torch.allclose(a[k], b[k], atol=tol, rtol=tol) for k in a)


@settings(max_examples=60, deadline=None)
@given(key_sets(), st.floats(1e-3, 1e3))
def test_rows_are_convex_combinations_and_sum_to_one(data: tuple, tau: float) -> None:
    rows, w, res, rw = data
    mixed, a = attend(rows, w, tau=tau, residuals=res, residual_weights=rw)
    assert a.shape == (len(rows), len(rows) + len(res))
    assert torch.allclose(a.sum(dim=1), torch.ones(len(rows), dtype=torch.float64))
    assert bool((a >= 0).all())
    values = rows + res
    for m in mixed:  # inside the per-coordinate hull of rows and residuals
        for k in SHAPES:
            stack = torch.stack([v[k] for v in values])
            assert bool((m[k] >= stack.min(0).values - 1e-5).all())
            assert bool((m[k] <= stack.max(0).values + 1e-5).all())
    assert len(res) == len(rw)  # residuals are columns only: never returned as rows


@settings(max_examples=60, deadline=None)
@given(key_sets())
def test_tau_to_zero_keeps_each_childs_own_keys(data: tuple) -> None:
    rows, w, res, rw = data
    mixed, a = attend(rows, w, tau=1e-9, residuals=res, residual_weights=rw)
    for m, r in zip(mixed, rows):
        assert all(torch.equal(m[k], r[k]) for k in r)  # exactly, not approximately
    assert torch.equal(a[:, : len(rows)], torch.eye(len(rows), dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(key_sets())
def test_tau_to_infinity_is_the_weighted_mean(data: tuple) -> None:
    rows, w, _, _ = data
    mixed, _ = attend(rows, w, tau=1e12)
    mean = weighted_mean(rows, w)
    for m in mixed:
        assert _close(m, mean)
    manual = {k: sum(wi * r[k].double() for wi, r in zip(w, rows)) / math.fsum(w) for k in SHAPES}
    assert _close(mean, {k: v.float() for k, v in manual.items()})


@settings(max_examples=40, deadline=None)
@given(key_sets(min_rows=2), st.floats(0.01, 10.0), st.randoms(use_true_random=False))
def test_permuting_children_permutes_the_result(data: tuple, tau: float, rnd) -> None:
    rows, w, _, _ = data
    order = list(range(len(rows)))
    rnd.shuffle(order)
    mixed, a = attend(rows, w, tau=tau)
    mixed_p, a_p = attend([rows[i] for i in order], [w[i] for i in order], tau=tau)
    for j, i in enumerate(order):
        assert _close(mixed_p[j], mixed[i])
    assert torch.allclose(a_p, a[order][:, order])


def test_attention_is_per_tensor_and_scale_free() -> None:
    # Tensor "a": children 0 and 1 point the same way (scaled), 2 is orthogonal.
    # Tensor "b": 0 and 2 agree.  Each tensor gets its own attention.
    rows = [{"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 1.0])},
            {"a": torch.tensor([5.0, 0.0]), "b": torch.tensor([1.0, 0.0])},
            {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([0.0, 3.0])}]
    mixed, a = attend(rows, [1.0, 1.0, 1.0], tau=0.01)
    assert torch.allclose(mixed[0]["a"], torch.tensor([3.0, 0.0]))  # 0 and 1 split evenly
    assert torch.allclose(mixed[0]["b"], torch.tensor([0.0, 2.0]))  # 0 and 2 split evenly
    cos = cosine_matrix([torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]), torch.zeros(2)])
    assert cos.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_weights_tilt_the_softmax_towards_heavy_children() -> None:
    rows = [{"a": torch.tensor([1.0, 0.0])}, {"a": torch.tensor([0.0, 1.0])}]
    _, even = attend(rows, [1.0, 1.0], tau=1.0)
    _, tilted = attend(rows, [1.0, 9.0], tau=1.0)
    assert tilted[0, 1] > even[0, 1]
    assert math.isclose(float(tilted[0, 1] / tilted[0, 0]), 9 * math.exp(-1), rel_tol=1e-9)


def test_least_attended_and_offers() -> None:
    a = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.375, 0.5, 0.125]],
                     dtype=torch.float64)
    assert least_attended(a, 1) == [2]  # column sums without self: 0.625, 0.75, 0.5
    assert least_attended(a, 2) == [0, 2]
    assert least_attended(a, 9) == [0, 1, 2]
    assert least_attended(a, 0) == []
    even = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    assert least_attended(even, 1) == [0]  # ties go to the earlier row
    rows = [{"k": torch.full((2,), float(i))} for i in range(3)]
    [r] = offer(["w/a", "w/b", "w/c"], rows, [1.0, 2.0, 3.0], a, 1)
    assert (r.source, r.weight, r.keys["k"].tolist()) == ("w/c", 3.0, [2.0, 2.0])
    rows[2]["k"].add_(1)
    assert r.keys["k"].tolist() == [2.0, 2.0]  # an offer is a copy


def test_routing_goes_to_the_other_sub_federations_only() -> None:
    def res(name: str) -> Residual:
        return Residual(source=name, weight=1.0, keys={})

    pools = route({"w/b": [res("w/b/1"), res("w/b/2")], "w/a": [res("w/a/1")], "w/c": []})
    assert {k: [r.source for r in v] for k, v in pools.items()} == {
        "w/a": ["w/b/1", "w/b/2"], "w/b": ["w/a/1"], "w/c": ["w/a/1", "w/b/1", "w/b/2"]}
    assert route({"w/a": [res("w/a/1")]}) == {"w/a": []}  # one sub-federation: nothing moves
