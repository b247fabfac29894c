"""Golden checks of the FedOpt pieces on a tiny model and random token data."""

from __future__ import annotations

import copy

import pytest
import torch

from fedgroups.fl.algorithms import (
    Aggregator,
    ClientUpdate,
    Server,
    client_update,
    load_params,
    make_optimizer,
    split_param_names,
)
from fedgroups.fl.client_data import ClientData
from fedgroups.fl.config import ClientConfig, OptimizerConfig
from fedgroups.fl.model import ModelArgs, build_model

ARGS = ModelArgs(vocab_size=40, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=32)


def _data(key: str, n: int, seed: int) -> ClientData:
    g = torch.Generator().manual_seed(seed)
    return ClientData(key=key, sequences=torch.randint(0, 40, (n, 9), generator=g),
                      num_examples=n + seed)


def _round(model, clients, client_cfg, algorithm, server, weighting="tokens", lr=None):
    start = {n: t.clone() for n, t in server.snapshot().items()}
    names = list(start)
    agg = Aggregator(start)
    for i, data in enumerate(clients):
        load_params(model, start)
        upd = client_update(model, data, client_cfg, algorithm, start=start, aggregated=names,
                            generator=torch.Generator().manual_seed(i))
        agg.add(upd, upd.weight(weighting))
    server.step(agg.mean(), lr if lr is not None else server.optimizer.param_groups[0]["lr"])
    return agg


def test_fedsgd_equals_large_batch_sgd_on_the_union() -> None:
    model = build_model(ARGS, seed=0)
    reference = copy.deepcopy(model)
    clients = [_data("a", 3, 1), _data("b", 7, 2), _data("c", 1, 3)]
    server = Server(dict(model.named_parameters()), OptimizerConfig(optimizer="sgd", lr=0.5))
    _round(model, clients, ClientConfig(batch_size=2), "fedsgd", server, lr=0.5)

    union = torch.cat([c.sequences for c in clients])
    reference.loss(union).backward()
    with torch.no_grad():
        for n, p in reference.named_parameters():
            torch.testing.assert_close(server.params[n], p - 0.5 * p.grad, rtol=1e-5, atol=1e-6)


def test_fedavg_one_client_one_step_equals_its_sgd_step() -> None:
    model = build_model(ARGS, seed=0)
    reference = copy.deepcopy(model)
    data = _data("a", 6, 1)
    cfg = ClientConfig(optimizer="sgd", lr=0.2, local_steps=1, batch_size=4, shuffle=False)
    server = Server(dict(model.named_parameters()), OptimizerConfig(optimizer="sgd", lr=1.0))
    _round(model, [data], cfg, "fedavg", server)

    reference.loss(data.sequences[:4]).backward()
    with torch.no_grad():
        for n, p in reference.named_parameters():
            torch.testing.assert_close(server.params[n], p - 0.2 * p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighting", ["uniform", "examples", "tokens"])
def test_weighting_is_a_weighted_mean_of_deltas(weighting: str) -> None:
    model = build_model(ARGS, seed=0)
    start = {n: t.detach().clone() for n, t in model.named_parameters()}
    clients = [_data("a", 2, 1), _data("b", 5, 2)]
    cfg = ClientConfig(optimizer="adam", lr=0.01, local_epochs=2, batch_size=2)
    agg = Aggregator(start)
    deltas, weights = [], []
    for i, data in enumerate(clients):
        load_params(model, start)
        upd = client_update(model, data, cfg, "fedavg", start=start, aggregated=list(start),
                            generator=torch.Generator().manual_seed(i))
        delta = dict(upd.delta)
        deltas.append(delta)
        weights.append({"uniform": 1.0, "examples": float(data.num_examples),
                        "tokens": float(data.num_tokens)}[weighting])
        agg.add(ClientUpdate(**{**upd.__dict__, "delta": delta.items()}),
                upd.weight(weighting))  # type: ignore[arg-type]
    assert upd.steps == 6  # 2 epochs of ceil(5 / 2) batches
    mean = agg.mean()
    for n in start:
        expected = sum(w * d[n] for w, d in zip(weights, deltas)) / sum(weights)
        torch.testing.assert_close(mean[n], expected)
    assert agg.stat("clients") == 2 and agg.stat("tokens") == 7 * 8


def test_aggregate_memory_does_not_grow_and_merge_equals_one_sum() -> None:
    model = build_model(ARGS, seed=0)
    params = {n: p.detach() for n, p in model.named_parameters()}
    one, a, b = Aggregator(params), Aggregator(params), Aggregator(params)
    g = torch.Generator().manual_seed(0)
    for i in range(50):
        delta = {n: torch.randn(p.shape, generator=g) for n, p in params.items()}
        upd = ClientUpdate(key=i, num_examples=1, num_tokens=i + 1, loss_sum=1.0, loss_tokens=1,
                           steps=1, finite=True, delta=delta.items())
        one.add(upd, i + 1.0)
        (a if i % 2 else b).add(ClientUpdate(**{**upd.__dict__, "delta": delta.items()}), i + 1.0)
        assert set(one.sums) == set(params)  # a running sum: one tensor per parameter
    a.merge(b)
    for n in params:
        torch.testing.assert_close(a.mean()[n], one.mean()[n])
    torch.testing.assert_close(a.stats, one.stats)


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_server_optimizer_matches_torch_on_pseudo_gradient(opt: str) -> None:
    cfg = OptimizerConfig(optimizer=opt, lr=0.1, momentum=0.8, betas=(0.9, 0.99))
    w0 = {"w": torch.randn(5, generator=torch.Generator().manual_seed(0))}
    server = Server(w0, cfg)
    ref = torch.nn.Parameter(w0["w"].clone())
    ref_opt = make_optimizer([ref], cfg)
    g = torch.Generator().manual_seed(1)
    for lr in (0.1, 0.05, 0.2):
        delta = torch.randn(5, generator=g)
        server.step({"w": delta}, lr)
        ref.grad = -delta
        ref_opt.param_groups[0]["lr"] = lr
        ref_opt.step()
        torch.testing.assert_close(server.params["w"].detach(), ref.detach())
    state = copy.deepcopy(server.state_dict())  # as if saved to and loaded from disk
    restored = Server(w0, cfg)
    restored.load_state_dict(state)
    delta = torch.randn(5, generator=g)
    server.step({"w": delta}, 0.1)
    restored.step({"w": delta}, 0.1)
    torch.testing.assert_close(server.params["w"], restored.params["w"])
    if opt != "sgd":  # momentum / Adam carry state between rounds
        assert server.optimizer.state_dict()["state"]


def test_fedavg_with_server_sgd_lr1_is_plain_average() -> None:
    model = build_model(ARGS, seed=0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    server = Server(start, OptimizerConfig(optimizer="sgd", lr=1.0))
    cfg = ClientConfig(optimizer="momentum", lr=0.05, local_steps=3, batch_size=2)
    clients = [_data("a", 4, 1), _data("b", 4, 2)]
    finals = []
    for i, d in enumerate(clients):
        load_params(model, start)
        client_update(model, d, cfg, "fedavg", start=start, aggregated=list(start),
                      generator=torch.Generator().manual_seed(i))
        finals.append({n: p.detach().clone() for n, p in model.named_parameters()})
    _round(model, clients, cfg, "fedavg", server, weighting="uniform", lr=1.0)
    for n in start:
        torch.testing.assert_close(server.params[n].detach(), (finals[0][n] + finals[1][n]) / 2)


def test_local_params_selection() -> None:
    names = [n for n, _ in build_model(ARGS, seed=0).named_parameters()]
    agg, local = split_param_names(names, ["blocks.1.*"])
    assert local and all(n.startswith("blocks.1.") for n in local)
    assert set(agg) | set(local) == set(names) and not set(agg) & set(local)
    with pytest.raises(ValueError, match="match no parameter"):
        split_param_names(names, ["block.9.*"])


def test_gradient_clipping_bounds_the_step() -> None:
    model = build_model(ARGS, seed=0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = ClientConfig(optimizer="sgd", lr=1.0, local_steps=1, batch_size=8,
                       grad_clip_norm=1e-3, shuffle=False)
    upd = client_update(model, _data("a", 8, 1), cfg, "fedavg", start=start,
                        aggregated=list(start), generator=torch.Generator())
    norm = torch.sqrt(sum((d.double() ** 2).sum() for _, d in upd.delta))
    assert norm <= 1e-3 * (1 + 1e-4)


@pytest.mark.parametrize("algorithm", ["fedavg", "fedsgd"])
def test_a_client_without_sequences_is_an_error_not_an_endless_loop(algorithm: str) -> None:
    model = build_model(ARGS, seed=0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    empty = ClientData(key="empty", sequences=torch.zeros(0, 9, dtype=torch.long),
                       num_examples=0)
    with pytest.raises(ValueError, match="client 'empty' has no sequences"):
        client_update(model, empty, ClientConfig(local_steps=3), algorithm, start=start,
                      aggregated=list(start), generator=torch.Generator().manual_seed(0))
