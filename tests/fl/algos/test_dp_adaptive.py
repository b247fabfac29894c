"""DP-FedAvg with adaptive clipping (fl/algos/dp_adaptive.py) against Andrew et al. (2021)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from fl_testkit import make_records, memory_federation, tiny_config

from fedgroups.fl.algorithms import ClientUpdate
from fedgroups.fl.algos.dp_adaptive import AdaptiveClipDP, update_noise_multiplier
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.federation import Federation
from fedgroups.fl.simulation import run
from fedgroups.fl.strategy import RoundContext, global_norm, strategy_from_config

UNIFORM = {"weight": 4.0, "clients": 4.0}


def _update(key: Any = "a") -> ClientUpdate:
    return ClientUpdate(key=key, num_examples=1, num_tokens=10, loss_sum=0.0, loss_tokens=10,
                        steps=1, finite=True, delta=())


def _round(dp: AdaptiveClipDP, norms: list[float], ctx: RoundContext
           ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """One round of deltas with the given L2 norms: (processed deltas, noised sum)."""
    out = []
    for i, norm in enumerate(norms):
        delta = {"w": torch.tensor([0.6, 0.0]) * norm, "b": torch.tensor([0.8]) * norm}
        out.append(dp.process_update(delta, _update(i), ctx))
    total = {n: sum(d[n] for d in out) for n in ("w", "b")}
    n = float(len(norms))
    return out, dp.process_aggregate(total, {"weight": n, "clients": n}, ctx)


def _quiet(**over: Any) -> AdaptiveClipDP:
    """No noise on the update nor on the count: the rule's arithmetic alone."""
    return AdaptiveClipDP(**{"noise_multiplier": 0.0, "clipped_count_stddev": 0.0,
                             "initial_clip": 2.0, **over})


CTX = RoundContext(round=0, seed=0, num_participants=4)


def test_all_updates_below_the_clip_shrink_it_by_exp_minus_lr_times_one_minus_gamma() -> None:
    dp = _quiet(target_quantile=0.5, clip_lr=0.2)
    deltas, total = _round(dp, [0.5, 1.0, 1.5, 1.9], CTX)
    assert [global_norm(d) for d in deltas] == pytest.approx([0.5, 1.0, 1.5, 1.9])
    assert global_norm(total) == pytest.approx(4.9)  # no noise
    assert dp.clip_norm == pytest.approx(2.0 * math.exp(-0.2 * (1 - 0.5)))
    assert dp.metrics() == {"dp/clip_norm": 2.0, "dp/fraction_unclipped": 1.0,
                            "dp/noise_std": 0.0, "dp/next_clip_norm": pytest.approx(dp.clip_norm)}
    assert dp.metrics() == {}  # per round


def test_the_clip_moves_geometrically_toward_the_target_quantile() -> None:
    dp = _quiet(target_quantile=0.8, clip_lr=0.5, initial_clip=1.0)
    deltas, _ = _round(dp, [0.5, 3.0, 4.0, 10.0], CTX)  # 1 of 4 at or below C = 1
    assert [global_norm(d) for d in deltas] == pytest.approx([0.5, 1.0, 1.0, 1.0])
    c1 = 1.0 * math.exp(-0.5 * (0.25 - 0.8))  # too many clipped: C grows
    assert dp.clip_norm == pytest.approx(c1)
    assert dp.metrics()["dp/fraction_unclipped"] == 0.25
    deltas, _ = _round(dp, [5.0, 5.0, 5.0, 5.0], RoundContext(round=1, seed=0))
    assert [global_norm(d) for d in deltas] == pytest.approx([c1] * 4)  # clipped to this C
    c2 = c1 * math.exp(-0.5 * (0.0 - 0.8))
    assert dp.clip_norm == pytest.approx(c2)
    _round(dp, [c2 * 0.999, c2 * 0.5, 0.0, c2 * 1.001], RoundContext(round=2, seed=0))
    assert dp.metrics()["dp/fraction_unclipped"] == 0.75
    assert dp.state_dict() == {"clip_norm": pytest.approx(dp.clip_norm), "rounds": 3}


def test_clip_lr_zero_keeps_a_fixed_clip() -> None:
    dp = _quiet(clip_lr=0.0)
    _round(dp, [0.1, 0.2, 0.3, 0.4], CTX)
    assert dp.clip_norm == 2.0


def test_update_noise_multiplier_splits_the_budget_as_in_the_paper() -> None:
    # z_Δ = (z^-2 - (2 σ_b)^-2)^(-1/2)
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx(1 / math.sqrt(1 - 1 / 4))
    assert update_noise_multiplier(0.5, 10.0) == pytest.approx((4 - 1 / 400) ** -0.5)
    assert update_noise_multiplier(0.0, 0.0) == 0.0  # no privacy asked, no noise
    for z, sigma_b in ((1.0, 0.5), (1.0, 0.0), (2.0, 0.9)):
        with pytest.raises(ConfigError, match=r"clipped_count_stddev .* must be more than "
                                              r"noise_multiplier / 2"):
            update_noise_multiplier(z, sigma_b)


def test_noise_on_the_sum_and_on_the_count_have_the_paper_scales() -> None:
    dp = AdaptiveClipDP(noise_multiplier=1.0, initial_clip=0.5, clipped_count_stddev=1.0)
    ctx = RoundContext(round=3, seed=1, node="eu", num_participants=4)
    for i in range(4):
        dp.process_update({"w": torch.zeros(1)}, _update(i), ctx)
    total = {"w": torch.zeros(40_000)}
    noisy = dp.process_aggregate(total, UNIFORM, ctx)
    z_delta = 1 / math.sqrt(1 - 1 / 4)
    assert noisy["w"].std().item() == pytest.approx(z_delta * 0.5, rel=0.03)
    count_noise = float(torch.randn((), generator=ctx.generator("dp_count"), dtype=torch.float64))
    fraction = (4 + 1.0 * count_noise) / 4
    assert dp.metrics() == {"dp/clip_norm": 0.5, "dp/fraction_unclipped": pytest.approx(fraction),
                            "dp/noise_std": pytest.approx(z_delta * 0.5),
                            "dp/next_clip_norm": pytest.approx(0.5 * math.exp(-0.2 * (fraction - 0.5)))}


def test_the_default_count_stddev_is_the_cohort_over_20() -> None:
    ctx = RoundContext(round=0, seed=2, num_participants=40)
    dp = AdaptiveClipDP(noise_multiplier=1.0, initial_clip=1.0)  # σ_b = 40 / 20 = 2
    for i in range(40):
        dp.process_update({"w": torch.zeros(1)}, _update(i), ctx)
    dp.process_aggregate({"w": torch.zeros(3)}, {"weight": 40.0, "clients": 40.0}, ctx)
    noise = float(torch.randn((), generator=ctx.generator("dp_count"), dtype=torch.float64))
    got = dp.metrics()
    assert got["dp/fraction_unclipped"] == pytest.approx((40 + 2.0 * noise) / 40)
    assert got["dp/noise_std"] == pytest.approx(update_noise_multiplier(1.0, 2.0))
    # A cohort of 4 leaves σ_b = 0.2 <= z / 2: refused when the round is aggregated.
    small = AdaptiveClipDP(noise_multiplier=1.0, initial_clip=1.0)
    _update_all(small, 4, CTX)
    with pytest.raises(ConfigError, match=r"clipped_count_stddev \(0.2\) must be more than "
                                          r"noise_multiplier / 2 \(0.5\)"):
        small.process_aggregate({"w": torch.zeros(1)}, UNIFORM, CTX)


def _update_all(dp: AdaptiveClipDP, n: int, ctx: RoundContext) -> None:
    for i in range(n):
        dp.process_update({"w": torch.ones(1)}, _update(i), ctx)


def test_noise_is_a_function_of_the_context() -> None:
    def noisy(ctx: RoundContext) -> torch.Tensor:
        dp = AdaptiveClipDP(noise_multiplier=1.0, initial_clip=1.0, clipped_count_stddev=5.0)
        _update_all(dp, 4, ctx)
        return dp.process_aggregate({"w": torch.zeros(8)}, UNIFORM, ctx)["w"]

    ctx = RoundContext(round=1, seed=3, num_participants=4)
    assert torch.equal(noisy(ctx), noisy(ctx))
    assert not torch.equal(noisy(ctx), noisy(RoundContext(round=2, seed=3, num_participants=4)))


def test_weighting_other_than_uniform_and_split_counts_are_refused() -> None:
    dp = _quiet()
    _update_all(dp, 4, CTX)
    with pytest.raises(ConfigError, match="'dp_adaptive' needs algorithm.weighting: uniform"):
        dp.process_aggregate({"w": torch.zeros(1)}, {"weight": 40.0, "clients": 4.0}, CTX)
    with pytest.raises(ConfigError, match=r"counted 4 of the round's 8 updates .* 'sequential'"):
        dp.process_aggregate({"w": torch.zeros(1)}, {"weight": 8.0, "clients": 8.0}, CTX)


@pytest.mark.parametrize("setting, value, match", [
    ("noise_multiplier", -1.0, r"noise_multiplier must be a finite number >= 0; got -1.0"),
    ("noise_multiplier", math.nan, r"noise_multiplier must be a finite number"),
    ("noise_multiplier", math.inf, r"noise_multiplier must be a finite number"),
    ("initial_clip", 0.0, r"initial_clip must be a finite number > 0; got 0.0"),
    ("initial_clip", -2.0, r"initial_clip must be a finite number > 0"),
    ("initial_clip", math.inf, r"initial_clip must be a finite number > 0; got inf"),
    ("target_quantile", 1.5, r"target_quantile must be a finite number >= 0 and <= 1; got 1.5"),
    ("target_quantile", -0.1, r"target_quantile must be"),
    ("clip_lr", -0.2, r"clip_lr must be a finite number >= 0"),
    ("clip_lr", math.nan, r"clip_lr must be a finite number"),
    ("clipped_count_stddev", -1.0, r"clipped_count_stddev must be a finite number >= 0"),
    ("clipped_count_stddev", math.inf, r"clipped_count_stddev must be a finite number"),
    ("clipped_count_stddev", 0.4, r"clipped_count_stddev \(0.4\) must be more than "
                                  r"noise_multiplier / 2 \(1\)"),
    ("noise_multiplier", "1", r"noise_multiplier must be a finite number >= 0; got '1'"),
])
def test_bad_settings_are_refused_from_the_config_in_one_line(setting: str, value: Any,
                                                              match: str) -> None:
    entry = {"name": "dp_adaptive", "noise_multiplier": 2.0, "initial_clip": 1.0,
             "clipped_count_stddev": 5.0, setting: value}
    with pytest.raises(ConfigError, match=r"^dp_adaptive: " + match) as err:
        strategy_from_config(_config({"strategy": {"processors": [entry]}}))
    assert "\n" not in str(err.value)


def test_an_unknown_setting_lists_the_valid_ones() -> None:
    entry = {"name": "dp_adaptive", "noise_multiplier": 1.0, "initial_clip": 1.0, "quantile": 0.5}
    with pytest.raises(ConfigError, match=r"strategy.processors.0: unknown setting\(s\) quantile; "
                       r"valid: noise_multiplier, initial_clip, target_quantile, clip_lr, "
                       r"clipped_count_stddev$"):
        strategy_from_config(_config({"strategy": {"processors": [entry]}}))


# --- runs ---------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "data": {"path": "x"}, "output_dir": "x", "rounds": 3, "cohort_size": 4, "seed": 5,
    "model": {"seq_len": 16},
    "algorithm": {"weighting": "uniform"},
    "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 3, "batch_size": 4,
               "max_sequences": 8},
    "server": {"optimizer": "sgd", "lr": 1.0},
}


def _config(over: dict[str, Any]) -> Any:
    return parse_config({**BASE, **over})


def _federation(processor: dict[str, Any], weighting: str = "uniform") -> Federation:
    config = _config({"strategy": {"processors": [processor]},
                      "algorithm": {"weighting": weighting}})
    return memory_federation(config, d_model=16, n_layers=1, d_ff=32)


def test_a_flat_run_trains_and_the_clip_follows_the_update_norms() -> None:
    fed = _federation({"name": "dp_adaptive", "noise_multiplier": 0.01, "initial_clip": 50.0,
                       "clip_lr": 0.5, "clipped_count_stddev": 0.5})
    dp = fed.strategy.processors[0]
    assert isinstance(dp, AdaptiveClipDP)
    rows = [fed.run_round(r) for r in range(4)]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    clips = [row["dp/clip_norm"] for row in rows]
    assert clips[0] == 50.0
    assert all(b < a for a, b in zip(clips, clips[1:]))  # far above every norm: it shrinks
    for row in rows:
        assert row["dp/noise_std"] == pytest.approx(
            update_noise_multiplier(0.01, 0.5) * row["dp/clip_norm"])
        assert row["dp/next_clip_norm"] == pytest.approx(
            row["dp/clip_norm"] * math.exp(-0.5 * (row["dp/fraction_unclipped"] - 0.5)))
    assert dp.state_dict()["rounds"] == 4


def test_a_run_without_uniform_weighting_is_refused() -> None:
    fed = _federation({"name": "dp_adaptive", "noise_multiplier": 0.0, "initial_clip": 1.0},
                      weighting="tokens")
    with pytest.raises(ConfigError, match="'dp_adaptive' needs algorithm.weighting: uniform"):
        fed.run_round(0)


def test_resume_keeps_the_clip_norm_and_gives_the_same_model(
        make_dataset: Any, tmp_path: Path) -> None:
    data = make_dataset(make_records(12))
    over = ["strategy.processors=[{name: dp_adaptive, noise_multiplier: 0.05, "
            "initial_clip: 5.0, clip_lr: 0.3, clipped_count_stddev: 0.5}]",
            "algorithm.weighting=uniform", "eval.datasets=[]"]
    whole = run(parse_config(tiny_config(data, str(tmp_path / "a"), rounds=3), over),
                echo=lambda m: None)
    run(parse_config(tiny_config(data, str(tmp_path / "b"), rounds=2), over), echo=lambda m: None)
    second = torch.load(tmp_path / "b" / "checkpoints" / "round_000002.pt", weights_only=True)
    assert second["strategy"][0]["rounds"] == 2 and second["strategy"][0]["clip_norm"] < 5.0
    resumed = run(parse_config(tiny_config(data, str(tmp_path / "b"), rounds=3), over),
                  resume=True, echo=lambda m: None)
    states = [torch.load(tmp_path / n / "checkpoints" / "round_000003.pt", weights_only=True)
              ["strategy"][0] for n in ("a", "b")]
    assert states[0] == states[1] and states[0]["rounds"] == 3
    assert [r["dp/clip_norm"] for r in whole.rows] == [r["dp/clip_norm"] for r in resumed.rows]
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_check_refuses_before_a_run_a_cohort_too_small_for_the_default_count_noise() -> None:
    """``check(cohort_size=..., backend_world_size=...)``, for a strategy-level dry check."""
    dp = AdaptiveClipDP(noise_multiplier=1.0, initial_clip=1.0)
    dp.check(cohort_size=11)  # σ_b = 0.55 > 0.5
    with pytest.raises(ConfigError, match=r"clipped_count_stddev \(0.5\) must be more than"):
        dp.check(cohort_size=10)
    AdaptiveClipDP(noise_multiplier=1.0, initial_clip=1.0, clipped_count_stddev=1.0).check(
        cohort_size=1)
    with pytest.raises(ConfigError, match="'dp_adaptive' .* backend 'sequential' only"):
        dp.check(cohort_size=40, backend_world_size=2)
