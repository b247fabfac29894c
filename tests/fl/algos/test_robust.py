"""Robust aggregators (fl/algos/robust.py): exact values on hand-made deltas, a flat run with
an outlier client, settings errors, and the DP combination refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fl_testkit import memory_federation

from fedgroups.cli import main as cli_main
from fedgroups.fl.algorithm import Algorithm
from fedgroups.fl.algorithms import Aggregator, ClientUpdate
from fedgroups.fl.algos.robust import Krum, Median, TrimmedMean
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.errors import NonFiniteLossError
from fedgroups.fl.federation import Federation
from fedgroups.fl.strategy import RoundContext, Strategy, strategy_from_config

CTX = RoundContext(round=0, seed=0)


def _update(key: Any, *, tokens: int = 10, extras: dict | None = None,
            finite: bool = True) -> ClientUpdate:
    return ClientUpdate(key=key, num_examples=2, num_tokens=tokens, loss_sum=1.5 * tokens,
                        loss_tokens=tokens, steps=3, finite=finite, delta=(),
                        extras=extras or {})


def _estimate(agg: Aggregator, rows: list[list[float]], weights: list[float] | None = None
              ) -> list[float]:
    """Feed ``rows`` as the deltas of parameter "w"; the mean delta the server would step on."""
    for i, row in enumerate(rows):
        w = 1.0 if weights is None else weights[i]
        agg.add(_update(i), w, [("w", torch.tensor(row))])
    return (agg.total()["w"] / agg.stat("weight")).tolist()


# --- exact values ------------------------------------------------------------------------


def test_median_of_an_odd_count_is_the_middle_value_per_coordinate() -> None:
    rows = [[1.0, 9.0, -2.0], [3.0, 7.0, 5.0], [2.0, -100.0, 4.0]]
    assert _estimate(Median({"w": torch.zeros(3)}), rows) == [2.0, 7.0, 4.0]


def test_median_of_an_even_count_is_the_mean_of_the_two_middle_values() -> None:
    rows = [[1.0, 10.0], [4.0, 0.0], [2.0, 30.0], [100.0, 20.0]]
    # sorted column 0: 1 2 4 100 -> (2 + 4) / 2; column 1: 0 10 20 30 -> 15
    assert _estimate(Median({"w": torch.zeros(2)}), rows) == [3.0, 15.0]


def test_the_estimate_is_unweighted_and_total_is_estimate_times_weight() -> None:
    agg = Median({"w": torch.zeros(1)})
    est = _estimate(agg, [[1.0], [2.0], [50.0]], weights=[100.0, 1.0, 1.0])
    assert est == [2.0]
    assert agg.total()["w"].item() == pytest.approx(2.0 * 102.0)


def test_trimmed_mean_drops_floor_beta_n_values_from_each_end_per_coordinate() -> None:
    rows = [[1.0, -50.0], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0], [1000.0, 4.0]]
    # beta 0.2, n 5: one value off each end -> mean(2, 3, 4) = 3, mean(1, 2, 3) = 2
    assert _estimate(TrimmedMean({"w": torch.zeros(2)}, beta=0.2), rows) == [3.0, 2.0]
    # beta 0.39, n 5: floor(1.95) = 1 still
    assert _estimate(TrimmedMean({"w": torch.zeros(2)}, beta=0.39), rows) == [3.0, 2.0]
    # beta 0.4: floor(2.0) = 2 -> the median
    assert _estimate(TrimmedMean({"w": torch.zeros(2)}, beta=0.4), rows) == [3.0, 2.0]
    # beta 0: the plain (unweighted) mean
    assert _estimate(TrimmedMean({"w": torch.zeros(2)}, beta=0.0), rows) == pytest.approx(
        [202.0, -8.0])
    # beta 0.3 with 4 deltas: floor(1.2) = 1
    four = [[0.0], [1.0], [5.0], [100.0]]
    assert _estimate(TrimmedMean({"w": torch.zeros(1)}, beta=0.3), four) == [3.0]


def test_krum_picks_the_delta_closest_to_its_neighbours() -> None:
    # Two parameters, so the distance must be taken over both together.
    deltas = [([0.0], [0.0]), ([1.0], [0.0]), ([0.0], [2.0]), ([1.0], [1.0]), ([30.0], [-40.0])]
    agg = Krum({"a": torch.zeros(1), "b": torch.zeros(1)}, byzantine=1)
    for i, (a, b) in enumerate(deltas):
        agg.add(_update(i), 1.0, [("a", torch.tensor(a)), ("b", torch.tensor(b))])
    # n 5, f 1: each score sums the n - f - 2 = 2 smallest squared distances to the others.
    # 0: to 1,2,3,4 = 1,4,2,2500 -> 1+2 = 3;   1: 1,5,1,2441 -> 2;   2: 4,5,2,2804 -> 6
    # 3: 2,1,2,2522 -> 3;   4 (the outlier): 2500, 2441, 2804, 2522 -> 4941
    assert agg.scores() == pytest.approx([3.0, 2.0, 6.0, 3.0, 4941.0])
    total = agg.total()
    assert total["a"].tolist() == [1.0 * 5] and total["b"].tolist() == [0.0]


def test_multi_krum_averages_the_m_best_and_breaks_ties_by_position() -> None:
    rows = [[0.0], [1.0], [2.0], [3.0], [100.0]]
    # 1-D, f 1: scores are 0:1+4=5, 1:1+1=2, 2:1+1=2, 3:1+4=5, 4: 97²+98²
    agg = Krum({"w": torch.zeros(1)}, byzantine=1, m=3)
    assert _estimate(agg, rows) == [1.0]  # 1, 2 and then 0 (tied with 3, earlier)
    assert agg.chosen() == [1, 2, 0]


def test_krum_refuses_a_round_with_fewer_than_2f_plus_3_participants() -> None:
    agg = Krum({"w": torch.zeros(1)}, byzantine=2)
    with pytest.raises(ConfigError) as err:
        _estimate(agg, [[0.0]] * 6)
    msg = str(err.value)
    assert "strategy.aggregator krum" in msg and "byzantine: 2" in msg
    assert "at least 2f + 3 = 7" in msg and "this round had 6" in msg and "\n" not in msg
    assert _estimate(Krum({"w": torch.zeros(1)}, byzantine=2), [[0.0]] * 7) == [0.0]
    with pytest.raises(ConfigError, match=r"m = 5 is more than n - f = 4"):
        _estimate(Krum({"w": torch.zeros(1)}, byzantine=1, m=5), [[0.0]] * 5)


@pytest.mark.parametrize("make", [
    lambda t: Median(t), lambda t: TrimmedMean(t, beta=0.25), lambda t: Krum(t, byzantine=0),
])
def test_counters_and_extras_are_the_base_classs(make: Any) -> None:
    template = {"w": torch.zeros(2)}
    robust, plain = make(template), Aggregator(template)
    updates = [(_update("a", tokens=7, extras={"c": torch.ones(2)}), 7.0),
               (_update("b", tokens=3, extras={"c": torch.full((2,), 2.0)}), 3.0),
               (_update("c", tokens=5), 5.0),
               (_update("bad", finite=False), 0.0)]
    for agg in (robust, plain):
        for i, (u, w) in enumerate(updates):
            agg.add(u, w, [("w", torch.tensor([float(i), -float(i)]))])
    assert robust.stats_dict() == plain.stats_dict()
    assert robust.stats_dict()["nonfinite"] == 1 and robust.stats_dict()["clients"] == 3
    torch.testing.assert_close(robust.extras["c"], plain.extras["c"])
    assert len(robust.kept) == 3  # the non-finite client's delta is not kept


def test_kept_deltas_are_copies_not_views_of_the_model() -> None:
    agg = Median({"w": torch.zeros(2)})
    live = torch.tensor([1.0, 2.0])
    agg.add(_update(0), 1.0, [("w", live)])
    live.add_(100.0)  # the scratch model trains the next client
    assert agg.total()["w"].tolist() == [1.0, 2.0]


def test_no_contribution_gives_a_zero_total() -> None:
    agg = Median({"w": torch.zeros(2)})
    agg.add(_update("x", finite=False), 0.0)
    assert agg.total()["w"].tolist() == [0.0, 0.0] and agg.stat("weight") == 0


# --- flat runs -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "data": {"path": "x"}, "output_dir": "x", "rounds": 3, "cohort_size": 8, "seed": 5,
    "model": {"seq_len": 16},
    "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 2, "batch_size": 4,
               "max_sequences": 8},
    "server": {"optimizer": "sgd", "lr": 1.0},
}
BAD_CLIENT = "user000"


class Outlier(Algorithm):
    """FedAvg, except that one client sends a huge update (a Byzantine client)."""

    def local_update(self, model, data, config, task, **kw):  # type: ignore[no-untyped-def]
        update = super().local_update(model, data, config, task, **kw)
        if task.key != BAD_CLIENT:
            return update.read_delta()
        return dataclasses.replace(update, delta=[(n, torch.full_like(d, 1e6))
                                                  for n, d in update.delta])


def _federation(aggregator: dict | None, outlier: bool) -> Federation:
    config = parse_config({**BASE, "strategy": {"aggregator": aggregator} if aggregator else {}})
    strategy = strategy_from_config(config)
    if outlier:
        strategy = dataclasses.replace(strategy, algorithm=Outlier())
    return memory_federation(config, strategy=strategy, d_model=16, n_layers=1, d_ff=32)


def _params(fed: Federation) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for _, p in sorted(fed.server.snapshot().items())])


@pytest.mark.parametrize("aggregator", [{"name": "median"},
                                        {"name": "trimmed_mean", "beta": 0.2},
                                        {"name": "krum", "byzantine": 1}])
def test_a_robust_run_resists_an_outlier_client_that_wrecks_the_mean(aggregator: dict) -> None:
    robust_bad, robust_clean = _federation(aggregator, True), _federation(aggregator, False)
    mean_bad, mean_clean = _federation(None, True), _federation(None, False)
    assert type(robust_bad.strategy.aggregator({})).__name__ in ("Median", "TrimmedMean", "Krum")
    start = _params(robust_bad).clone()
    losses = []
    for r in range(3):
        losses.append(robust_bad.run_round(r)["train_loss"])
        robust_clean.run_round(r)
    assert losses[-1] < losses[0]  # it trains
    mean_bad.run_round(0)
    mean_clean.run_round(0)
    assert (_params(mean_bad) - _params(mean_clean)).abs().max().item() > 1e4
    with pytest.raises(NonFiniteLossError):  # the mean run is wrecked by the next round
        mean_bad.run_round(1)
    moved = (_params(robust_clean) - start).abs().max().item()
    assert torch.isfinite(_params(robust_bad)).all()
    # The outlier shifts the robust estimate by about one order statistic of the honest
    # deltas, never by its own size (1e6): within the honest run's own movement.
    assert (_params(robust_bad) - _params(robust_clean)).abs().max().item() < 2 * moved


# --- settings -------------------------------------------------------------------------------


def _strategy(aggregator: dict) -> Strategy:
    return strategy_from_config(parse_config({**BASE, "strategy": {"aggregator": aggregator}}))


@pytest.mark.parametrize("entry, match", [
    ({"name": "krum", "f": 1}, r"^strategy.aggregator: unknown setting\(s\) f; valid: byzantine, m$"),
    ({"name": "median", "beta": 0.1},
     r"^strategy.aggregator: unknown setting\(s\) beta; valid: \(none\)$"),
    ({"name": "trimmed_mean", "trim": 0.1}, r"unknown setting\(s\) trim; valid: beta$"),
    ({"name": "trimmed_mean", "beta": 0.5}, r"^strategy.aggregator: trimmed_mean: beta .* \[0, 0.5\); got 0.5$"),
    ({"name": "trimmed_mean", "beta": -0.1}, r"beta .* got -0.1"),
    ({"name": "krum", "byzantine": -1}, r"^strategy.aggregator: krum: byzantine must be an integer >= 0; got -1$"),
    ({"name": "krum", "m": 0}, r"krum: m must be an integer >= 1; got 0"),
    ({"name": "krum", "byzantine": 1.5}, r"byzantine must be an integer"),
    ({"name": "medain"}, r"unknown aggregator 'medain'; built-ins: krum, mean, median, trimmed_mean"),
])
def test_bad_aggregator_settings_are_one_clear_line(entry: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        _strategy(entry)
    assert "\n" not in str(err.value)


def test_built_in_names_resolve_to_these_classes() -> None:
    assert _strategy({"name": "median"}).aggregator is Median
    agg = _strategy({"name": "trimmed_mean", "beta": 0.3}).aggregator({"w": torch.zeros(1)})
    assert isinstance(agg, TrimmedMean) and agg.beta == 0.3
    agg = _strategy({"name": "krum", "byzantine": 2, "m": 3}).aggregator({})
    assert isinstance(agg, Krum) and (agg.byzantine, agg.m) == (2, 3)


DP = [{"name": "dp", "clip_norm": 1.0, "noise_multiplier": 0.5}]


def test_a_robust_aggregator_with_dp_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        strategy_from_config(parse_config({
            **BASE, "algorithm": {"weighting": "uniform"},
            "strategy": {"aggregator": {"name": "median"}, "processors": DP}}))
    msg = str(err.value)
    assert "strategy.aggregator 'median'" in msg and "'dp'" in msg and "\n" not in msg


def test_the_cli_refuses_dp_with_median_before_any_run_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    cfg = {**BASE, "output_dir": str(out), "data": {"path": str(tmp_path / "no_data")},
           "algorithm": {"weighting": "uniform"},
           "strategy": {"aggregator": {"name": "median"}, "processors": DP}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli_main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "strategy.aggregator 'median'" in err and "use the default aggregator with DP" in err
    assert not out.exists()


def test_check_refuses_before_a_run_what_its_first_round_would() -> None:
    """``check(cohort_size=..., backend_world_size=...)``, for a strategy-level dry check."""
    krum = Krum({}, byzantine=2, m=3)
    krum.check(cohort_size=7)
    with pytest.raises(ConfigError, match=r"at least 2f \+ 3 = 7 .*; cohort_size is 6"):
        krum.check(cohort_size=6)
    with pytest.raises(ConfigError, match=r"m = 6 is more than n - f = 5 for 7 participants"):
        Krum({}, byzantine=2, m=6).check(cohort_size=7)
    for agg in (Median({}), TrimmedMean({}, beta=0.1), krum):
        with pytest.raises(ConfigError, match="runs with backend 'sequential' only"):
            agg.check(cohort_size=9, backend_world_size=2)
    Median({}).check(cohort_size=1)
