"""Partitioners: coverage, disjointness, determinism, batch independence, and the
distribution each promises, within statistical tolerance."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedgroups as fg
from fedgroups.errors import KeyFunctionError, SettingError
from fedgroups.keys import (
    DirichletLabelKey,
    IidKey,
    KeyFunction,
    LabelShardsKey,
    PowerLawKey,
    SuperGroupKey,
    super_group_mapping,
)
from fedgroups.keys.partition_common import ordinal_uniforms
from fedgroups.keys.partitioners import parse_partitioner


def ordinals(n: int, unit: int = 0, start: int = 0) -> np.ndarray:
    return (np.uint64(unit) << np.uint64(40)) + np.arange(start, start + n, dtype=np.uint64)


def run(key: KeyFunction, batch: pa.RecordBatch, ords: np.ndarray | None = None) -> np.ndarray:
    out = key.keys(batch, ordinals(batch.num_rows) if ords is None else ords)
    assert len(out) == batch.num_rows
    return out.to_numpy(zero_copy_only=False)


def labels_batch(n: int, num_labels: int, seed: int = 0) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    return pa.record_batch({"y": rng.integers(0, num_labels, n)})


def all_partitioners(n_groups: int, seed: int) -> list[KeyFunction]:
    return [
        IidKey(spec="iid", columns=(), num_groups=n_groups, seed=seed),
        DirichletLabelKey(spec="d", num_groups=n_groups, alpha=0.5, label_column="y", seed=seed),
        LabelShardsKey(spec="p", num_groups=n_groups, labels_per_group=2, label_column="y",
                       labels=tuple(range(5)), seed=seed),
        PowerLawKey(spec="pl", num_groups=n_groups, exponent=1.2, seed=seed),
        SuperGroupKey(spec="s", field_name="y", num_super_groups=n_groups, seed=seed),
    ]


# ---- invariants shared by every partitioner -------------------------------------------
@given(n_groups=st.integers(3, 40), seed=st.integers(0, 2**32), n=st.integers(1, 400),
       cut=st.integers(0, 400), unit=st.integers(0, 5))
def test_every_example_one_group_in_range_and_independent_of_batching(
        n_groups: int, seed: int, n: int, cut: int, unit: int) -> None:
    batch = labels_batch(n, 5, seed % 1000)
    ords = ordinals(n, unit=unit, start=7)
    cut = min(cut, n)
    for key in all_partitioners(n_groups, seed):
        whole = run(key, batch, ords)
        assert whole.dtype == np.int64 and ((whole >= 0) & (whole < n_groups)).all()
        # The same examples keyed in two batches (two workers) get the same groups.
        parts = np.concatenate([run(key, batch.slice(0, cut), ords[:cut]),
                                run(key, batch.slice(cut), ords[cut:])])
        np.testing.assert_array_equal(whole, parts)
        # A fresh key function with the same settings agrees: nothing depends on state.
        again = next(k for k in all_partitioners(n_groups, seed) if type(k) is type(key))
        np.testing.assert_array_equal(whole, run(again, batch, ords))


def test_different_seeds_give_different_partitions() -> None:
    batch = labels_batch(2000, 5)
    for a, b in zip(all_partitioners(10, 1), all_partitioners(10, 2)):
        assert (run(a, batch) != run(b, batch)).any(), type(a).__name__


@given(seed=st.integers(0, 2**40))
def test_ordinal_uniforms_are_in_unit_interval_and_uniform(seed: int) -> None:
    u = ordinal_uniforms(ordinals(20_000), seed, tag=1)
    assert ((u >= 0) & (u < 1)).all()
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert np.abs(counts - 2000).max() < 5 * np.sqrt(2000)


# ---- IID -----------------------------------------------------------------------------------
def test_iid_groups_are_equal_in_expectation() -> None:
    n, k = 50_000, 8
    g = run(IidKey(spec="iid", columns=(), num_groups=k, seed=3), labels_batch(n, 2))
    share = np.bincount(g, minlength=k) / n
    assert np.abs(share - 1 / k).max() < 5 * np.sqrt((1 / k) / n)


# ---- Dirichlet label skew -----------------------------------------------------------------
@given(alpha=st.sampled_from([0.05, 0.3, 1.0, 10.0]), n_groups=st.integers(2, 12),
       seed=st.integers(0, 10_000))
def test_dirichlet_each_label_follows_its_proportions(alpha: float, n_groups: int,
                                                      seed: int) -> None:
    n_per_label, num_labels = 8_000, 3
    batch = pa.record_batch({"y": np.repeat(np.arange(num_labels), n_per_label)})
    key = DirichletLabelKey(spec="d", num_groups=n_groups, alpha=alpha, label_column="y",
                            seed=seed)
    g = run(key, batch)
    for label in range(num_labels):
        p = key.proportions(label)
        assert p.shape == (n_groups,) and abs(p.sum() - 1) < 1e-9
        seen = np.bincount(g[batch.column(0).to_numpy() == label], minlength=n_groups)
        tol = 5 * np.sqrt(p * (1 - p) / n_per_label) + 1e-3
        assert (np.abs(seen / n_per_label - p) <= tol).all(), (label, seen, p)


def test_dirichlet_proportions_depend_on_the_seed() -> None:
    """Each seed draws its own proportions: the groups a label's examples fall in differ
    in distribution between seeds (not only example by example), and agree for one seed."""
    n_per_label, num_labels, n_groups = 10_000, 4, 8
    batch = pa.record_batch({"y": np.repeat(np.arange(num_labels), n_per_label)})
    y = batch.column(0).to_numpy()

    def label_histograms(seed: int, ords_seed: int) -> np.ndarray:
        key = DirichletLabelKey(spec="d", num_groups=n_groups, alpha=0.5, label_column="y",
                                seed=seed)
        ords = np.random.default_rng(ords_seed).permutation(10**6)[:len(y)].astype(np.uint64)
        g = run(key, batch, ords)
        return np.stack([np.bincount(g[y == lb], minlength=n_groups) / n_per_label
                         for lb in range(num_labels)])

    same = np.abs(label_histograms(1, 0) - label_histograms(1, 1)).sum(axis=1) / 2
    other = np.abs(label_histograms(1, 0) - label_histograms(2, 0)).sum(axis=1) / 2
    assert same.max() < 0.05  # the same seed on other examples: only sampling noise
    assert other.min() > 0.1, other  # another seed: other proportions for every label


def test_label_shards_deal_depends_on_the_seed() -> None:
    def deal(seed: int) -> dict:
        return LabelShardsKey(spec="p", num_groups=20, labels_per_group=2, label_column="y",
                              labels=tuple(range(10)), seed=seed).label_sets()

    assert deal(1) == deal(1) and deal(1) != deal(2)


def test_dirichlet_small_alpha_is_more_skewed_than_large() -> None:
    def mean_top_share(alpha: float) -> float:
        key = DirichletLabelKey(spec="d", num_groups=20, alpha=alpha, label_column="y")
        return float(np.mean([key.proportions(label).max() for label in range(50)]))

    skewed, flat = mean_top_share(0.05), mean_top_share(100.0)
    assert skewed > 0.5 and flat < 0.15


def test_dirichlet_tiny_alpha_still_a_distribution_and_string_labels_work() -> None:
    key = DirichletLabelKey(spec="d", num_groups=5, alpha=1e-4, label_column="y")
    batch = pa.record_batch({"y": ["cat", "dog", None, "cat"]})
    out = key.keys(batch, ordinals(4))
    assert out.null_count == 1  # no label, no group: the build's on_missing_key decides
    for label in ("cat", "dog"):
        p = key.proportions(label)
        assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-9


def test_dirichlet_rejects_bad_settings() -> None:
    with pytest.raises(SettingError, match="alpha"):
        DirichletLabelKey(spec="d", num_groups=5, alpha=0, label_column="y")
    with pytest.raises(SettingError, match="num_groups"):
        DirichletLabelKey(spec="d", num_groups=0, alpha=1, label_column="y")


# ---- pathological: k labels per group ---------------------------------------------------------
@given(n_groups=st.integers(1, 30), k=st.integers(1, 4), num_labels=st.integers(1, 10),
       seed=st.integers(0, 10_000))
def test_label_shards_at_most_k_labels_and_every_label_covered(
        n_groups: int, k: int, num_labels: int, seed: int) -> None:
    if k > num_labels or n_groups * k < num_labels:
        with pytest.raises(SettingError):
            LabelShardsKey(spec="p", num_groups=n_groups, labels_per_group=k, label_column="y",
                           labels=tuple(range(num_labels)), seed=seed)
        return
    key = LabelShardsKey(spec="p", num_groups=n_groups, labels_per_group=k, label_column="y",
                         labels=tuple(range(num_labels)), seed=seed)
    batch = labels_batch(3_000, num_labels, seed)
    g = run(key, batch)
    y = batch.column(0).to_numpy()
    allowed = key.label_sets()
    for j in range(n_groups):
        assert 1 <= len(allowed[j]) <= k
        assert set(np.unique(y[g == j]).tolist()) <= allowed[j]
    for label in range(num_labels):
        assert len(key.groups_of(label)) >= 1
        assert set(g[y == label].tolist()) <= set(key.groups_of(label).tolist())
    # Each label is dealt ⌊N·k/L⌋ or ⌈N·k/L⌉ times (fewer holders only if dealt twice to one).
    dealt = n_groups * k / num_labels
    assert max(len(key.groups_of(lb)) for lb in range(num_labels)) <= np.ceil(dealt)


def test_label_shards_spread_a_label_evenly_over_its_groups() -> None:
    key = LabelShardsKey(spec="p", num_groups=20, labels_per_group=2, label_column="y",
                         labels=tuple(range(10)), seed=1)
    batch = pa.record_batch({"y": np.zeros(20_000, np.int64)})
    g = run(key, batch)
    holders = key.groups_of(0)
    counts = np.array([(g == h).sum() for h in holders])
    expect = 20_000 / len(holders)
    assert np.abs(counts - expect).max() < 5 * np.sqrt(expect)


def test_label_shards_unknown_label_is_a_clear_error() -> None:
    key = LabelShardsKey(spec="p", num_groups=4, labels_per_group=1, label_column="y",
                         labels=("a", "b"))
    with pytest.raises(Exception, match="'zebra'.*vocabulary"):
        key.keys(pa.record_batch({"y": ["a", "zebra"]}), ordinals(2))


# ---- power-law sizes --------------------------------------------------------------------------
@given(n_groups=st.integers(2, 50), exponent=st.floats(0, 2.5), seed=st.integers(0, 1000))
def test_power_law_shares_match_within_tolerance(n_groups: int, exponent: float,
                                                 seed: int) -> None:
    n = 40_000
    key = PowerLawKey(spec="pl", num_groups=n_groups, exponent=exponent, seed=seed)
    share = np.bincount(run(key, labels_batch(n, 1)), minlength=n_groups) / n
    p = key.shares()
    assert abs(p.sum() - 1) < 1e-9 and (np.diff(p) <= 1e-15).all()
    assert (np.abs(share - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-3).all()


# ---- super-groups ----------------------------------------------------------------------------
@given(keys=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=60, unique=True),
       m=st.integers(1, 10), seed=st.integers(0, 1000), exponent=st.sampled_from([0.0, 1.5]))
def test_super_group_mapping_covers_every_group_once(keys: list[str], m: int, seed: int,
                                                     exponent: float) -> None:
    mapping = super_group_mapping(keys, m, seed=seed, exponent=exponent)
    assert set(mapping) == set(keys)
    sizes = np.bincount(list(mapping.values()), minlength=m)
    assert len(sizes) == m and sizes.sum() == len(keys)
    if len(keys) >= m:
        assert (sizes >= 1).all()
    if exponent == 0:
        assert sizes.max() - sizes.min() <= 1
    assert super_group_mapping(keys, m, seed=seed, exponent=exponent) == mapping


def test_super_groups_nest_groups_in_a_real_build(tmp_path) -> None:
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in rng.integers(0, 300, 5_000)]
    table = pa.table({"user": users, "text": ["x y"] * len(users)})
    by_hash = fg.build(table, SuperGroupKey(spec="super:7:user", field_name="user",
                                            num_super_groups=7, seed=1),
                       tmp_path / "orgs", progress=False)
    assert by_hash.manifest["totals"]["examples"] == 5_000
    orgs = fg.open(tmp_path / "orgs")
    owner: dict[str, int] = {}
    for group in orgs:
        for ex in group:
            # a user never spans two orgs
            assert owner.setdefault(ex["user"], group.key) == group.key
    assert set(owner) == set(users)

    users_ds = fg.build(table, "field:user", tmp_path / "users", progress=False)
    mapping = super_group_mapping(fg.open(users_ds.path), 4, exponent=1.0)
    report = fg.build(table, SuperGroupKey(spec="super-table", field_name="user",
                                           mapping=mapping), tmp_path / "orgs2", progress=False)
    sizes = dict(zip(fg.open(report.path).keys(), fg.open(report.path).group_sizes()))
    expect = {o: sum(users.count(u) for u, m in mapping.items() if m == o) for o in range(4)}
    assert sizes == expect


# ---- real builds: every example in exactly one group ---------------------------------------
@pytest.mark.parametrize("spec", ["dirichlet:6:0.3:label:5", "pathological:6:2:label:4",
                                  "power-law:6:1.5:2", "super:3:label"])
def test_build_with_partitioner_keeps_every_example_once(tmp_path, spec: str) -> None:
    n = 3_000
    table = pa.table({"label": np.arange(n) % 4, "text": [f"ex {i}" for i in range(n)]})
    key = parse_partitioner(spec)
    assert key is not None
    report = fg.build(table, key, tmp_path / "ds", progress=False, workers=2)
    ds = fg.open(report.path)
    seen = [ex["text"] for g in ds for ex in g]
    assert sorted(seen) == sorted(table.column("text").to_pylist())  # covered, disjoint
    assert int(ds.group_sizes().sum()) == n
    again = fg.build(table, parse_partitioner(spec), tmp_path / "ds2", progress=False, workers=1)
    assert fg.open(again.path).keys() == ds.keys()
    assert list(fg.open(again.path).group_sizes()) == list(ds.group_sizes())


# ---- KEYSPEC parsing --------------------------------------------------------------------------
def test_parse_partitioner_specs() -> None:
    d = parse_partitioner("dirichlet:10:0.5:label:7")
    assert isinstance(d, DirichletLabelKey)
    assert (d.num_groups, d.alpha, d.label_column, d.seed, d.columns) == (10, 0.5, "label", 7,
                                                                          ("label",))
    p = parse_partitioner("pathological:100:2:y:10")
    assert isinstance(p, LabelShardsKey) and p.labels == tuple(range(10))
    pl = parse_partitioner("power-law:50:1.1")
    assert isinstance(pl, PowerLawKey) and pl.seed == 0
    s = parse_partitioner("super:4:user:3")
    assert isinstance(s, SuperGroupKey) and (s.num_super_groups, s.seed) == (4, 3)
    assert parse_partitioner("field:user") is None
    assert d.describe()["alpha"] == 0.5


@pytest.mark.parametrize("bad", ["dirichlet:10:0.5", "dirichlet:x:0.5:y", "dirichlet:10:-1:y",
                                 "pathological:2:2:y:10", "power-law:5", "power-law:5:-1",
                                 "super:0:user", "dirichlet:10:0.5:y:seed"])
def test_parse_partitioner_errors_name_the_spec(bad: str) -> None:
    with pytest.raises(SettingError, match="must|use|cannot"):
        parse_partitioner(bad)


def test_label_column_must_be_a_key_type() -> None:
    key = DirichletLabelKey(spec="d", num_groups=3, alpha=1, label_column="y")
    with pytest.raises(KeyFunctionError):
        key.keys(pa.record_batch({"y": [1.5, 2.5]}), ordinals(2))
