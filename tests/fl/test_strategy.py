"""The strategy interface: golden equality with the pre-strategy code, processors, user code."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from fl_testkit import make_records, memory_config, memory_federation, tiny_config

from fedgroups.errors import FedGroupsError
from fedgroups.fl.algorithms import Aggregator, ClientUpdate, client_update, load_params
from fedgroups.fl.backends import SequentialBackend
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.federation import Federation, client_seed, cohort_keys
from fedgroups.fl.model import build_model
from fedgroups.fl.schedules import server_lr
from fedgroups.fl.simulation import run
from fedgroups.fl.strategy import (
    GaussianDP,
    NormClip,
    Processor,
    RoundContext,
    Strategy,
    global_norm,
)

# Captured from the code before the strategy interface existed (commit 3d4e07c), same data
# and seed: (sum, sum of |.|, element 123) of the final parameters sorted by name.
GOLDEN = {
    "fedavg_sgd": ({}, (159.31823159811165, 563.2314647129156, -0.0013893201248720288)),
    "fedavg_adam_local": (
        {"server.optimizer": "adam", "server.lr": 0.01, "algorithm.local_params": ["blocks.1.*"],
         "algorithm.weighting": "examples"},
        (167.66819305562194, 731.9697500829775, -0.02799089252948761)),
    "fedsgd_momentum": (
        {"algorithm.name": "fedsgd", "client.local_steps": None, "server.optimizer": "momentum",
         "server.lr": 0.5},
        (158.36179605308007, 579.4027726541053, -0.0031055479776114225)),
}


_config = memory_config


def _federation(over: dict[str, Any], strategy: Strategy | None = None) -> Federation:
    return memory_federation(_config(over), strategy=strategy)


def _flat(fed: Federation) -> torch.Tensor:
    fed.load_global(fed.model)
    return torch.cat([p.detach().reshape(-1) for _, p in sorted(fed.model.named_parameters())])


def _old_run_round(fed: Federation, round_: int) -> None:
    """``Federation.run_round`` as it was before strategies (sequential, all finite)."""
    cfg = fed.config
    keys = cohort_keys(fed.source.keys, cfg.cohort_size, cfg.seed, round_)
    start = {n: t.clone() for n, t in fed.server.snapshot().items()}
    aggregate = Aggregator(start)
    params = dict(fed.model.named_parameters())
    for pos in range(len(keys)):
        data = fed.client_data(keys[pos])
        load_params(fed.model, start, fed.local_store.get(str(data.key), fed.local_init))
        update = client_update(
            fed.model, data, cfg.client, cfg.algorithm.name, start=start,
            aggregated=fed.aggregated,
            generator=torch.Generator().manual_seed(client_seed(cfg.seed, round_, pos)))
        aggregate.add(update, update.weight(cfg.algorithm.weighting))
        if fed.local:
            fed.local_store[str(data.key)] = {n: params[n].detach().clone() for n in fed.local}
    fed.server.step(aggregate.mean(), server_lr(cfg.server.schedule, cfg.server.lr, round_,
                                                cfg.rounds))


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_default_strategy_is_bit_identical_to_the_code_before_it(case: str) -> None:
    over, (total, abs_total, elem) = GOLDEN[case]
    new, old = _federation(over), _federation(over)
    for r in range(3):
        new.run_round(r)
        _old_run_round(old, r)
    a, b = _flat(new), _flat(old)
    assert torch.equal(a, b)
    # Captured numbers: equal here; a tolerance for other CPUs' kernels.
    assert a.double().sum().item() == pytest.approx(total, rel=1e-6)
    assert a.double().abs().sum().item() == pytest.approx(abs_total, rel=1e-6)
    assert a[123].item() == pytest.approx(elem, rel=1e-5)


# --- built-in processors ------------------------------------------------------------


def _update(key: str = "a", tokens: int = 10) -> ClientUpdate:
    return ClientUpdate(key=key, num_examples=1, num_tokens=tokens, loss_sum=0.0,
                        loss_tokens=tokens, steps=1, finite=True, delta=())


def test_norm_clip_scales_only_updates_above_the_bound() -> None:
    clip, ctx = NormClip(max_norm=2.0), RoundContext(round=0, seed=0)
    big = {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([12.0])}  # norm 13
    small = {"w": torch.tensor([0.3, 0.4]), "b": torch.tensor([1.2])}  # norm 1.3
    out = clip.process_update(big, _update(), ctx)
    assert global_norm(out) == pytest.approx(2.0)
    torch.testing.assert_close(out["w"] / out["b"], big["w"] / big["b"])  # direction kept
    assert clip.process_update(small, _update(), ctx) is small
    assert clip.metrics() == {"clip/fraction_clipped": 0.5, "clip/mean_norm": pytest.approx(7.15)}
    with pytest.raises(ConfigError, match="max_norm must be > 0"):
        NormClip(max_norm=0)


def test_clip_from_config_bounds_the_server_step() -> None:
    fed = _federation({"strategy.processors": [{"name": "clip", "max_norm": 0.01}]})
    before = {n: t.clone() for n, t in fed.server.snapshot().items()}
    row = fed.run_round(0)
    step = {n: fed.server.params[n].detach() - before[n] for n in before}
    assert global_norm(step) <= 0.01 + 1e-6  # server SGD lr 1: step = weighted mean of deltas
    assert row["clip/fraction_clipped"] == 1.0 and row["clip/mean_norm"] > 0.01


def test_dp_noise_has_the_configured_scale_and_is_a_function_of_the_context() -> None:
    dp = GaussianDP(clip_norm=0.5, noise_multiplier=2.0)
    total = {"w": torch.zeros(20_000), "v": torch.zeros(3, 3)}
    stats = {"weight": 4.0, "clients": 4.0}
    ctx = RoundContext(round=3, seed=1, node="eu")
    noisy = dp.process_aggregate(total, stats, ctx)
    assert noisy["w"].std().item() == pytest.approx(1.0, rel=0.03)  # sigma * C
    assert abs(noisy["w"].mean().item()) < 0.03
    assert torch.equal(dp.process_aggregate(total, stats, ctx)["w"], noisy["w"])
    other = dp.process_aggregate(total, stats, RoundContext(round=3, seed=1, node="us"))
    assert not torch.equal(other["w"], noisy["w"])
    assert dp.state_dict() == {"rounds": 3}
    with pytest.raises(ConfigError, match="weighting: uniform"):
        dp.process_aggregate(total, {"weight": 40.0, "clients": 4.0}, ctx)


def test_dp_with_zero_noise_equals_clipping_alone() -> None:
    dp_fed = _federation({"algorithm.weighting": "uniform", "strategy.processors": [
        {"name": "dp", "clip_norm": 0.05, "noise_multiplier": 0.0}]})
    clip_fed = _federation({"algorithm.weighting": "uniform",
                            "strategy.processors": [{"name": "clip", "max_norm": 0.05}]})
    for r in range(2):
        dp_fed.run_round(r)
        clip_fed.run_round(r)
    assert torch.equal(_flat(dp_fed), _flat(clip_fed))


def test_round_context_generator_is_seeded_by_every_field() -> None:
    base = RoundContext(round=1, seed=2, node="a", num_participants=3)
    draw = lambda ctx, tag="t": torch.randn(4, generator=ctx.generator(tag))  # noqa: E731
    assert torch.equal(draw(base), draw(RoundContext(round=1, seed=2, node="a")))
    for other in (RoundContext(round=2, seed=2, node="a"), RoundContext(round=1, seed=3, node="a"),
                  RoundContext(round=1, seed=2, node="b")):
        assert not torch.equal(draw(base), draw(other))
    assert not torch.equal(draw(base, "x"), draw(base, "y"))


# --- user code --------------------------------------------------------------------------

USER_MODULE = '''
import torch
from fedgroups.fl.algorithms import Aggregator
from fedgroups.fl.strategy import Processor

CALLS = []


class Scale(Processor):
    def __init__(self, factor):
        self.factor = factor

    def process_update(self, delta, update, ctx):
        CALLS.append(("update", ctx.round, update.key))
        return {n: t * self.factor for n, t in delta.items()}

    def process_aggregate(self, total, stats, ctx):
        CALLS.append(("aggregate", ctx.round, stats["clients"]))
        return total

    def metrics(self):
        return {"scale/factor": self.factor}


def make_scale(factor=1.0):
    return Scale(factor)


class Median(Aggregator):
    """Coordinate-wise median of the deltas (keeps them all: memory grows with the cohort)."""

    def __init__(self, template):
        super().__init__(template)
        self.kept = []

    def add(self, update, weight, delta=None):
        d = dict(update.delta if delta is None else delta)
        if update.finite:
            self.kept.append({n: t.clone() for n, t in d.items()})
        super().add(update, weight, d.items())

    def total(self):
        w = self.stat("weight")
        return {n: torch.stack([d[n] for d in self.kept]).median(dim=0).values * w
                for n in self.sums}


def not_a_processor():
    return 42
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"user_strategy_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module(name)


def test_user_processor_from_a_config_entry_runs_in_a_real_run(
        user_module: Any, make_dataset: Any, tmp_path: Path) -> None:
    data = make_dataset(make_records(12))
    base = tiny_config(data, str(tmp_path / "a"), rounds=2)
    cfg = parse_config(base, ["strategy.processors=[{factory: "
                              f"'{user_module.__name__}:make_scale', factor: 0.0}}]"])
    res = run(cfg, echo=lambda m: None)
    calls = user_module.CALLS
    assert [c for c in calls if c[0] == "aggregate"] == [("aggregate", 0, 4.0), ("aggregate", 1, 4.0)]
    assert sum(c[0] == "update" for c in calls) == 8
    assert all(r["scale/factor"] == 0.0 for r in res.rows)
    # A zero delta leaves the global model at its initialisation.
    init = build_model(res.model.args, cfg.seed)
    for (n, p), q in zip(res.model.named_parameters(), init.parameters()):
        assert torch.equal(p, q), n


def test_user_median_aggregator_ignores_an_outlier(user_module: Any) -> None:
    template = {"w": torch.zeros(3)}
    deltas = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.1, 2.1, 2.9]),
              torch.tensor([1e6, -1e6, 1e6])]
    strategy = Strategy(aggregator=user_module.Median, weighting="uniform")
    agg = strategy.aggregator(template)
    for i, d in enumerate(deltas):
        agg.add(_update(str(i)), 1.0, [("w", d)])
    mean = strategy.mean_delta(agg, RoundContext(round=0, seed=0))
    torch.testing.assert_close(mean["w"], torch.tensor([1.1, 2.0, 3.0]))
    plain = Strategy(weighting="uniform")
    agg = plain.aggregator(template)
    for i, d in enumerate(deltas):
        agg.add(_update(str(i)), 1.0, [("w", d)])
    assert plain.mean_delta(agg, RoundContext(round=0, seed=0))["w"][0] > 1e5  # the outlier wins


def test_user_aggregator_from_config_trains(user_module: Any) -> None:
    fed = _federation({"strategy.aggregator": {"factory": f"{user_module.__name__}:Median"}})
    assert type(fed.strategy.aggregator({"w": torch.zeros(1)})).__name__ == "Median"
    losses = [fed.run_round(r)["train_loss"] for r in range(3)]
    assert losses[-1] < losses[0]


def test_python_api_strategy_argument_wins(user_module: Any) -> None:
    fed = _federation({}, strategy=Strategy(processors=(user_module.make_scale(0.0),)))
    before = _flat(fed).clone()
    fed.run_round(0)
    assert torch.equal(_flat(fed), before)


@pytest.mark.parametrize("entry, match", [
    ({"name": "clipp"}, r"strategy.processors.0: unknown processor 'clipp'; built-ins: clip, dp"),
    ({"name": "clip", "max_nrom": 1}, r"strategy.processors.0: .*max_nrom"),
    ({"factory": "no_such_module_xyz:f"}, r"cannot import module 'no_such_module_xyz'.*PYTHONPATH"),
    ({"factory": "math"}, r"expected 'package.module:function'"),
    ({"factory": "math:nope"}, r"module 'math' has no 'nope'"),
])
def test_bad_processor_entries_name_the_setting(entry: dict, match: str) -> None:
    with pytest.raises(FedGroupsError, match=match):
        _federation({"strategy.processors": [entry]})


def test_factory_returning_something_else_is_refused(user_module: Any) -> None:
    with pytest.raises(ConfigError, match="not an update processor"):
        _federation({"strategy.processors": [
            {"factory": f"{user_module.__name__}:not_a_processor"}]})
    with pytest.raises(ConfigError, match="exactly one of 'name' or 'factory'"):
        _config({"strategy.processors": [{"max_norm": 1.0}]})


def test_processor_state_is_checkpointed_and_resumed(make_dataset: Any, tmp_path: Path) -> None:
    data = make_dataset(make_records(12))
    dp = ["strategy.processors=[{name: dp, clip_norm: 0.5, noise_multiplier: 0.1}]",
          "algorithm.weighting=uniform", "eval.datasets=[]"]
    whole = run(parse_config(tiny_config(data, str(tmp_path / "a"), rounds=3), dp),
                echo=lambda m: None)
    run(parse_config(tiny_config(data, str(tmp_path / "b"), rounds=2), dp), echo=lambda m: None)
    resumed = run(parse_config(tiny_config(data, str(tmp_path / "b"), rounds=3), dp),
                  resume=True, echo=lambda m: None)
    for name in ("a", "b"):
        state = torch.load(tmp_path / name / "checkpoints" / "round_000003.pt", weights_only=True)
        assert state["strategy"] == [{"rounds": 3}], name  # 2 before the stop + 1 after
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)  # the noise of round 2 is a function of the round, not of history


def test_base_processor_is_a_no_op() -> None:
    p, ctx = Processor(), RoundContext(round=0, seed=0)
    d = {"w": torch.ones(2)}
    assert p.process_update(d, _update(), ctx) is d
    assert p.process_aggregate(d, {}, ctx) is d
    assert p.metrics() == {} and p.state_dict() == {}


def test_a_robust_aggregator_is_refused_across_ranks(user_module: Any) -> None:
    class TwoRanks(SequentialBackend):
        world_size = 2  # the check happens before any reduction

    fed = _federation({"strategy.aggregator": {"factory": f"{user_module.__name__}:Median"}})
    fed.engine.work.backend = TwoRanks()
    with pytest.raises(ConfigError, match="Median replaces total.*'sequential' only"):
        fed.run_round(0)
