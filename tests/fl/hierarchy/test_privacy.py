"""Client-level DP per leaf federation: the noise's scale and the reported epsilon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dp_accounting
import pytest
import torch
from dp_accounting import rdp

from fedgroups.fl.config import parse_config
from fedgroups.fl.hierarchy import records
from fedgroups.fl.hierarchy.runner import run
from fedgroups.fl.strategy import GaussianDP, RoundContext


def test_noise_on_the_sum_has_the_configured_scale() -> None:
    dp = GaussianDP(clip_norm=0.5, noise_multiplier=1.3)
    total = {"w": torch.zeros(200_000)}
    ctx = RoundContext(round=0, seed=0, node="w/es", num_participants=4)
    noisy = dp.process_aggregate(total, {"weight": 4.0, "clients": 4.0}, ctx)["w"].double()
    assert abs(float(noisy.mean())) < 0.01
    assert float(noisy.std()) == pytest.approx(1.3 * 0.5, rel=0.01)  # 1% = ~6 standard errors


def test_the_federation_adds_that_noise_to_its_mean_update(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    """With client lr 0 every update is zero: the server's step is the noise / clients."""
    cfg = world_config_factory(world_data, tmp_path / "run", rounds=1, cohort_size=4,
                               **{"client.lr": 0.0, "personalization.enabled": False})
    cfg["hierarchy"] = {"method": "hierfavg", "eval_fraction": 0.0, "nodes": [
        {"name": "all", "keys": ["*"],
         "privacy": {"clip_norm": 2.0, "noise_multiplier": 0.7}}]}
    result = run(parse_config(cfg), echo=lambda m: None)
    from fedgroups.fl.model_factory import make_model

    vocab = result.root.shared.tokenizer.get_vocab_size()
    init = {n: p.detach() for n, p in
            make_model(parse_config(cfg).model, vocab, 0)[0].named_parameters()}
    step = torch.cat([(p - init[n]).reshape(-1).double()
                      for n, p in result.root.server.snapshot().items()])
    assert float(step.std()) * 4 == pytest.approx(0.7 * 2.0, rel=0.03)  # 4 clients
    [row] = result.rows
    assert row["dp/noise_std"] == pytest.approx(1.4)


def test_reported_epsilon_is_the_accountants(world_data: str, tmp_path: Path,
                                             world_config_factory: Any) -> None:
    sigma, delta = 0.9, 1e-4
    cfg = world_config_factory(world_data, tmp_path / "run", rounds=3, cohort_size=2, **{
        "personalization.enabled": False, "eval.every": 1,
        "hierarchy.level_settings": [{}, {}, {"rounds": 2}],
        "hierarchy.node_settings": {"it": {"privacy": {
            "clip_norm": 1.0, "noise_multiplier": sigma, "delta": delta}}}})
    result = run(parse_config(cfg), echo=lambda m: None)
    leaf = next(lf for lf in records.read_tree(tmp_path / "run") if lf.name == "it")
    q = 2 / leaf.train_clients  # cohort 2 of the leaf's training documents

    def expected(steps: int) -> float:
        acc = rdp.RdpAccountant()
        acc.compose(dp_accounting.PoissonSampledDpEvent(
            q, dp_accounting.GaussianDpEvent(sigma)), steps)
        return acc.get_epsilon(delta)

    rows = [r for r in records.read_metrics(tmp_path / "run") if r.node == leaf.path]
    assert [r.dp_epsilon for r in rows] == [pytest.approx(expected(2 * (i + 1)), rel=1e-9)
                                            for i in range(3)]
    assert all(r.dp_delta == delta for r in rows)
    evals = {(e.round, e.federation): e for e in result.evals}
    assert evals[(3, leaf.path)].dp_epsilon == pytest.approx(expected(6), rel=1e-9)
    assert evals[(3, "world/romance/es")].dp_epsilon is None  # its sibling runs without DP
    assert result.summary.federations[leaf.path]["dp_epsilon"] == pytest.approx(expected(6))
