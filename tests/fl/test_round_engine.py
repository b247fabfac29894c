"""The round engine's algorithm channel: payload, client state, extras, server state."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from fl_testkit import memory_federation

from fedgroups.fl.algorithm import Algorithm
from fedgroups.fl.backends import SequentialBackend
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.federation import Federation
from fedgroups.fl.strategy import Strategy


class Counting(Algorithm):
    """FedAvg that counts: each client's state is how often it took part; its extra is one
    tensor of ones; the server's state is the running sum of extras; the payload says the
    round, which the client checks."""

    name = "counting"
    client_state = True

    def __init__(self) -> None:
        self.seen = torch.zeros(())
        self.payloads: list[tuple[Any, int]] = []

    def configure(self, key: Any, ctx: Any) -> dict[str, Any]:
        return {"round": ctx.round, "seen": self.seen.clone()}

    def local_update(self, model, data, config, task, *, aggregated, device, generator):
        self.payloads.append((task.key, task.payload["round"]))
        update = super().local_update(model, data, config, task, aggregated=aggregated,
                                      device=device, generator=generator)
        times = (task.state or {"times": torch.zeros(())})["times"] + 1
        return dataclasses.replace(update, extras={"one": torch.ones(())},
                                   state={"times": times})

    def server_update(self, extras, stats, ctx) -> None:
        assert float(extras["one"]) == stats["clients"]
        self.seen = self.seen + extras["one"]

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state) -> None:
        self.seen = state["seen"].clone()


def _federation(threads: int = 1, backend: Any = None) -> Federation:
    cfg = parse_config({
        "data": {"path": "x"}, "output_dir": "x", "rounds": 4, "cohort_size": 3, "seed": 1,
        "model": {"seq_len": 16}, "run": {"client_threads": threads},
        "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 2, "batch_size": 4,
                   "max_sequences": 8}})
    return memory_federation(cfg, backend=backend, strategy=Strategy(algorithm=Counting()))


def test_payload_state_and_extras_reach_their_places() -> None:
    fed = _federation()
    algo = fed.strategy.algorithm
    clients = 0.0
    for r in range(4):
        clients += fed.run_round(r)["clients"]
        assert all(rr == r for _, rr in algo.payloads[-3:])
    assert float(algo.seen) == clients  # every client's extra reached the server once
    times = {k: int(s["times"]) for k, s in fed.engine.client_states.items()}
    participations: dict[str, int] = {}
    for key, _ in algo.payloads:
        participations[str(key)] = participations.get(str(key), 0) + 1
    assert times == participations and max(times.values()) > 1  # state came back


def test_client_state_and_server_state_survive_a_checkpoint() -> None:
    full = _federation()
    for r in range(4):
        full.run_round(r)
    cut = _federation()
    for r in range(2):
        cut.run_round(r)
    state = cut.state_dict()
    resumed = _federation()
    resumed.load_state_dict(state)
    for r in range(2, 4):
        resumed.run_round(r)
    assert resumed.engine.client_states.keys() == full.engine.client_states.keys()
    for k, s in full.engine.client_states.items():
        assert torch.equal(resumed.engine.client_states[k]["times"], s["times"])
    assert torch.equal(resumed.strategy.algorithm.seen, full.strategy.algorithm.seen)
    for (n, a), (_, b) in zip(full.server.snapshot().items(), resumed.server.snapshot().items()):
        assert torch.equal(a, b), n


def test_client_threads_give_the_same_states_bit_for_bit() -> None:
    one, two = _federation(1), _federation(2)
    for r in range(3):
        one.run_round(r)
        two.run_round(r)
    assert one.engine.client_states.keys() == two.engine.client_states.keys()
    for (n, a), (_, b) in zip(one.server.snapshot().items(), two.server.snapshot().items()):
        assert torch.equal(a, b), n


def test_a_stateful_algorithm_is_refused_across_ranks() -> None:
    class TwoRanks(SequentialBackend):
        world_size = 2

    with pytest.raises(ConfigError, match="counting.*keeps per-client state.*'sequential'"):
        _federation(backend=TwoRanks())


def test_a_selection_returning_duplicates_or_strangers_is_refused() -> None:
    for bad in ([0, 0, 1], [0, 99]):
        fed = _federation()
        fed.strategy = dataclasses.replace(fed.strategy, selection=lambda n, k, ctx, probe, bad=bad: bad)
        fed.engine.strategy = fed.strategy
        with pytest.raises(ConfigError, match="strategy.selection.*distinct indices"):
            fed.run_round(0)
