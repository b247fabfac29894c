"""FedOpt servers (fl/algos/fedopt.py) against Reddi et al. (2021), Algorithm 2, by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from fl_testkit import make_records, memory_federation, tiny_config

from fedgroups.fl.algorithms import Server
from fedgroups.fl.algos.fedopt import AdaptiveServer, FedAvgM, make_server
from fedgroups.fl.config import ConfigError, ServerConfig, parse_config
from fedgroups.fl.federation import Federation
from fedgroups.fl.simulation import run
from fedgroups.fl.strategy import strategy_from_config

X0 = [1.0, -2.0, 0.5]
DELTAS = [[0.1, -0.3, 0.0], [0.2, 0.05, -0.01], [-0.4, 0.0, 0.3]]
LRS = [0.5, 0.5, 0.25]
B1, B2, TAU = 0.9, 0.99, 1e-3


def _by_hand(rule: str) -> list[list[float]]:
    """Algorithm 2 of Reddi et al. in plain floats: x after each step."""
    x, out = list(X0), []
    m = [0.0] * len(x)
    v = [TAU ** 2] * len(x)  # v_{-1} >= tau^2
    for delta, lr in zip(DELTAS, LRS):
        for j, d in enumerate(delta):
            m[j] = B1 * m[j] + (1 - B1) * d
            if rule == "adagrad":
                v[j] = v[j] + d * d
            elif rule == "fedadam":
                v[j] = B2 * v[j] + (1 - B2) * d * d
            else:  # yogi
                sign = (v[j] > d * d) - (v[j] < d * d)
                v[j] = v[j] - (1 - B2) * d * d * sign
            x[j] = x[j] + lr * m[j] / (math.sqrt(v[j]) + TAU)
        out.append(list(x))
    return out


@pytest.mark.parametrize("rule", ["fedadam", "yogi", "adagrad"])
def test_adaptive_server_follows_algorithm_2_step_by_step(rule: str) -> None:
    config = ServerConfig(optimizer=rule, betas=(B1, B2), tau=TAU)
    server = make_server({"w": torch.tensor(X0)}, config)
    assert isinstance(server, AdaptiveServer) and server.rule == rule
    for delta, lr, want in zip(DELTAS, LRS, _by_hand(rule)):
        server.step({"w": torch.tensor(delta)}, lr)
        assert server.snapshot()["w"].tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_the_three_rules_differ_where_the_paper_says() -> None:
    # Same first moment; the second moments differ from the first step on.
    ends = {rule: _by_hand(rule)[-1] for rule in ("fedadam", "yogi", "adagrad")}
    assert ends["fedadam"] != ends["yogi"] != ends["adagrad"]
    # Yogi's v moves by (1 - beta2) * delta^2 only: after one step from tau^2 it is
    # tau^2 + 0.01 * 0.01 for delta 0.1 (Adam's: 0.99 tau^2 + 0.01 * 0.01).
    server = make_server({"w": torch.tensor([0.0])}, ServerConfig(optimizer="yogi", tau=TAU))
    server.step({"w": torch.tensor([0.1])}, 1.0)
    assert server.v["w"].item() == pytest.approx(TAU ** 2 + 0.01 * 0.01, rel=1e-6)
    assert server.m["w"].item() == pytest.approx(0.01, rel=1e-6)


def test_fedavgm_is_server_sgd_with_momentum() -> None:
    assert FedAvgM.server_optimizer == "momentum"
    config = ServerConfig(optimizer="sgd", momentum=0.8)
    server = make_server({"w": torch.tensor([1.0, 2.0])}, config, FedAvgM.server_optimizer)
    assert type(server) is Server
    buf, x = [0.0, 0.0], [1.0, 2.0]
    for delta, lr in zip([[0.5, -1.0], [0.25, 0.0], [-1.0, 1.0]], [1.0, 0.5, 0.5]):
        server.step({"w": torch.tensor(delta)}, lr)
        for j, d in enumerate(delta):  # pseudo-gradient -delta; torch's heavy-ball SGD
            buf[j] = 0.8 * buf[j] + (-d)
            x[j] -= lr * buf[j]
        assert server.snapshot()["w"].tolist() == pytest.approx(x)


# --- through configs and runs -----------------------------------------------------------

BASE: dict[str, Any] = {
    "data": {"path": "x"}, "output_dir": "x", "rounds": 3, "cohort_size": 4, "seed": 5,
    "model": {"seq_len": 16},
    "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 2, "batch_size": 4,
               "max_sequences": 8},
    "server": {"optimizer": "sgd", "lr": 0.05},
}


def _config(algorithm: str, **server: Any) -> Any:
    return parse_config({**BASE, "algorithm": {"name": algorithm},
                         "server": {**BASE["server"], **server}})


def _federation(config: Any) -> Federation:
    return memory_federation(config, d_model=16, n_layers=1, d_ff=32)


def _flat(fed: Federation) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for _, p in sorted(fed.server.snapshot().items())])


@pytest.mark.parametrize("algorithm, optimizer", [("fedyogi", "yogi"), ("fedadam", "fedadam"),
                                                  ("fedadagrad", "adagrad"),
                                                  ("fedavgm", "momentum")])
def test_the_algorithm_name_and_the_server_optimizer_give_identical_runs(
        algorithm: str, optimizer: str) -> None:
    by_name = _federation(_config(algorithm))
    by_both = _federation(_config(algorithm, optimizer=optimizer))
    by_server = _federation(_config("fedavg", optimizer=optimizer))
    assert type(by_name.server) is type(by_server.server)
    for r in range(2):
        for fed in (by_name, by_both, by_server):
            fed.run_round(r)
    assert torch.equal(_flat(by_name), _flat(by_server))
    assert torch.equal(_flat(by_both), _flat(by_server))
    plain = _federation(_config("fedavg"))
    for r in range(2):
        plain.run_round(r)
    assert not torch.equal(_flat(plain), _flat(by_name))  # the server rule did something


@pytest.mark.parametrize("algorithm, optimizer", [("fedadam", "momentum"), ("fedyogi", "adam"),
                                                  ("fedavgm", "fedadam"),
                                                  ("fedadagrad", "yogi")])
def test_an_algorithm_with_a_contradicting_server_optimizer_is_refused(
        algorithm: str, optimizer: str) -> None:
    with pytest.raises(ConfigError) as err:
        strategy_from_config(_config(algorithm, optimizer=optimizer))
    msg = str(err.value)
    assert f"algorithm {algorithm!r}" in msg and f"server.optimizer {optimizer!r}" in msg
    assert "\n" not in msg


def test_server_betas_outside_0_1_are_refused() -> None:
    params = {"w": torch.zeros(2)}
    for betas in ((0.9, 1.0), (1.0, 0.99), (-0.1, 0.99), (0.9, math.nan)):
        with pytest.raises(ConfigError, match=r"server.betas must be two numbers in \[0, 1\)"):
            make_server(params, ServerConfig(optimizer="fedadam", betas=betas))


def test_a_checkpoint_of_another_rule_or_server_is_refused() -> None:
    adam = make_server({"w": torch.ones(2)}, ServerConfig(optimizer="fedadam"))
    yogi = make_server({"w": torch.ones(2)}, ServerConfig(optimizer="yogi"))
    with pytest.raises(ConfigError, match="the checkpoint's server rule is 'fedadam'"):
        yogi.load_state_dict(adam.state_dict())
    plain = make_server({"w": torch.ones(2)}, ServerConfig(optimizer="momentum"))
    with pytest.raises(ConfigError, match="the checkpoint's server has no adaptive state"):
        yogi.load_state_dict(plain.state_dict())


def test_resume_of_an_adaptive_server_is_exact(make_dataset: Any, tmp_path: Path) -> None:
    data = make_dataset(make_records(12))
    over = ["algorithm.name=fedyogi", "server.lr=0.03", "eval.datasets=[]"]
    whole = run(parse_config(tiny_config(data, str(tmp_path / "a"), rounds=3), over),
                echo=lambda m: None)
    run(parse_config(tiny_config(data, str(tmp_path / "b"), rounds=2), over), echo=lambda m: None)
    stopped = torch.load(tmp_path / "b" / "checkpoints" / "round_000002.pt", weights_only=True)
    assert stopped["server"]["rule"] == "yogi"
    assert set(stopped["server"]["m"]) == set(stopped["server"]["v"]) == set(
        stopped["server"]["params"])
    assert any(t.abs().sum() > 0 for t in stopped["server"]["m"].values())
    resumed = run(parse_config(tiny_config(data, str(tmp_path / "b"), rounds=3), over),
                  resume=True, echo=lambda m: None)
    ends = [torch.load(tmp_path / n / "checkpoints" / "round_000003.pt", weights_only=True)
            ["server"] for n in ("a", "b")]
    for part in ("params", "m", "v"):
        for name, t in ends[0][part].items():
            assert torch.equal(t, ends[1][part][name]), (part, name)
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_resume_without_the_moments_would_differ() -> None:
    """The resume test above can fail: a server that forgot m and v goes elsewhere."""
    fed = _federation(_config("fedadam"))
    fed.run_round(0)
    state = fed.state_dict()
    fresh = _federation(_config("fedadam"))
    fresh.load_state_dict(state)
    forgetful = _federation(_config("fedadam"))
    with torch.no_grad():
        for n, p in forgetful.server.params.items():
            p.copy_(state["server"]["params"][n])
    for f in (fed, fresh, forgetful):
        f.run_round(1)
    assert torch.equal(_flat(fed), _flat(fresh))
    assert not torch.equal(_flat(fed), _flat(forgetful))
