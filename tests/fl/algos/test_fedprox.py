"""FedProx (Li et al., 2020): the local step is SGD on loss + (mu/2)·||w - w_global||²."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from algos_testkit import federation, server_params

from fedgroups.fl.algorithm import ClientTask, make_algorithm
from fedgroups.fl.algorithms import ClientUpdate
from fedgroups.fl.algos.fedprox import FedProx
from fedgroups.fl.client_data import ClientData
from fedgroups.fl.config import ClientConfig, ConfigError
from fedgroups.fl.model import ModelArgs, build_model
from fedgroups.fl.strategy import global_norm

ARGS = ModelArgs(vocab_size=40, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=32)


def _data(n: int = 8, seed: int = 1) -> ClientData:
    g = torch.Generator().manual_seed(seed)
    return ClientData(key="a", sequences=torch.randint(0, 40, (n, 9), generator=g),
                      num_examples=n)


def _local(algo: FedProx, model: torch.nn.Module, data: ClientData, cfg: ClientConfig,
           names: list[str] | None = None) -> ClientUpdate:
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = list(start) if names is None else names
    task = ClientTask(key=data.key, start=start, payload={}, state=None)
    return algo.local_update(model, data, cfg, task, aggregated=names, device="cpu",
                             generator=torch.Generator().manual_seed(0))


def test_mu_zero_is_fedavg_bit_for_bit() -> None:
    prox, avg = (federation({"algorithm.name": "fedprox", "algorithm.mu": 0.0}),
                 federation({}))
    other = federation({"algorithm.name": "fedprox", "algorithm.mu": 0.5})
    assert isinstance(prox.strategy.algorithm, FedProx) and prox.strategy.algorithm.mu == 0.0
    for r in range(3):
        prox.run_round(r)
        avg.run_round(r)
        other.run_round(r)
    a, b, c = server_params(prox), server_params(avg), server_params(other)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(c[n], b[n]) for n in c)  # mu > 0 does change the run


@pytest.mark.parametrize("local", [False, True])
def test_second_local_step_is_sgd_on_the_proximal_objective(local: bool) -> None:
    """delta after 2 steps = hand-made SGD on F + (mu/2)||w - w0||^2 over the aggregated
    parameters (``local``: those of blocks.1 are kept local and get no proximal term)."""
    mu, lr = 0.7, 0.2
    model = build_model(ARGS, seed=0)
    ref = copy.deepcopy(model)
    names = [n for n, _ in model.named_parameters()]
    aggregated = [n for n in names if not (local and n.startswith("blocks.1."))]
    data = _data()
    cfg = ClientConfig(optimizer="sgd", lr=lr, local_steps=2, batch_size=4, shuffle=False)
    update = _local(FedProx(mu=mu), model, data, cfg, aggregated)
    delta = dict(update.delta)
    assert list(delta) == aggregated and update.steps == 2 and update.finite

    # By hand: step 1 at w0 (the proximal gradient is 0), step 2 at w1 != w0.
    w0 = {n: p.detach().clone() for n, p in ref.named_parameters()}
    for batch in (data.sequences[:4], data.sequences[4:8]):
        ref.zero_grad()
        ref.loss(batch).backward()
        with torch.no_grad():
            for n, p in ref.named_parameters():
                prox = mu * (p - w0[n]) if n in aggregated else 0.0
                p -= lr * (p.grad + prox)
    trained = dict(model.named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(trained[n], p, rtol=1e-5, atol=1e-7)
    # The proximal term is visible at this precision: without it the result differs.
    plain_model = build_model(ARGS, seed=0)
    plain = dict(_local(FedProx(mu=0.0), plain_model, data, cfg, aggregated).delta)
    gap = global_norm({n: delta[n] - plain[n] for n in delta})
    assert gap > 1e-3 * global_norm(delta)


def test_a_larger_mu_keeps_the_client_closer_to_the_global_weights() -> None:
    cfg = ClientConfig(optimizer="sgd", lr=0.1, local_steps=6, batch_size=4)
    norms = []
    for mu in (0.0, 1.0, 3.0, 9.0):
        update = _local(FedProx(mu=mu), build_model(ARGS, seed=0), _data(16), cfg)
        norms.append(global_norm(dict(update.delta)))
    assert norms == sorted(norms, reverse=True) and len(set(norms)) == 4, norms
    assert norms[-1] < 0.7 * norms[0], norms


@pytest.mark.parametrize("mu", [-0.1, math.nan, math.inf, "big", True])
def test_bad_mu_is_a_config_error_naming_the_setting(mu: object) -> None:
    with pytest.raises(ConfigError, match=r"algorithm 'fedprox': mu must be a finite number"):
        make_algorithm("fedprox", None, {"mu": mu})


def test_config_section_builds_fedprox_with_its_settings() -> None:
    fed = federation({"algorithm.name": "fedprox", "algorithm.mu": 0.25})
    algo = fed.strategy.algorithm
    assert isinstance(algo, FedProx) and algo.settings() == {"mu": 0.25}
    assert FedProx().settings() == {"mu": 0.01}
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) nu; valid: mu"):
        federation({"algorithm.name": "fedprox", "algorithm.nu": 0.25})
    losses = [fed.run_round(r)["train_loss"] for r in range(3)]
    assert losses[-1] < losses[0]


def test_client_threads_give_the_same_run() -> None:
    """Clients trained two at a time (each thread its own model and hooks) = one at a time."""
    over = {"algorithm.name": "fedprox", "algorithm.mu": 0.5}
    one, two = federation(over), federation({**over, "run.client_threads": 2})
    for r in range(2):
        one.run_round(r)
        two.run_round(r)
    a, b = server_params(one), server_params(two)
    assert all(torch.equal(a[n], b[n]) for n in a)
