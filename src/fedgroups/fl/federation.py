"""A flat federation: one :class:`~fedgroups.fl.engine.RoundEngine` over a dataset's clients.

``Federation.run_round`` is one round of the run's algorithm (``fl/engine.py``: selection,
client updates, processors, aggregation, server step); the simulation loop
(``fl/simulation.py``) adds evaluation, checkpoints and logging around it.  A flat run is a
tree of one node: every federation of a tree (``fl/hierarchy/node.py``) runs the same engine.

Parameters matching ``algorithm.local_params`` are not aggregated: each client keeps its
own copy across rounds (``local_store``, saved in checkpoints), starting from the initial
values.  What happens to each update is the run's :class:`~fedgroups.fl.strategy.Strategy`:
from the config (``algorithm`` and ``strategy`` sections) unless one is passed in.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer

from fedgroups.fl.algorithms import Params, load_params, split_param_names
from fedgroups.fl.backends import Backend
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.datasets import GroupSource
from fedgroups.fl.engine import ClientWork, RoundEngine, client_seed, cohort_keys
from fedgroups.fl.errors import NonFiniteLossError
from fedgroups.fl.strategy import Strategy, strategy_from_config

__all__ = ["Federation", "NonFiniteLossError", "client_seed", "cohort_keys"]


class Federation:
    def __init__(
        self,
        *,
        model: torch.nn.Module,
        source: GroupSource,
        tokenizer: Tokenizer,
        eos_id: int,
        config: TrainConfig,
        backend: Backend,
        device: torch.device | str = "cpu",
        strategy: Strategy | None = None,
    ) -> None:
        self.model = model
        self.source = source
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.config = config
        self.backend = backend
        self.device = device
        self.strategy = strategy_from_config(config) if strategy is None else strategy
        names = [n for n, _ in model.named_parameters()]
        self.aggregated, self.local = split_param_names(names, config.algorithm.local_params)
        params = dict(model.named_parameters())
        self.server = self.strategy.make_server({n: params[n] for n in self.aggregated},
                                                config.server)
        self.local_init: Params = {n: params[n].detach().clone() for n in self.local}
        work = ClientWork(model=model, device=device, threads=config.run.client_threads,
                          backend=backend)
        self.engine = RoundEngine(
            strategy=self.strategy, server=self.server, names=self.aggregated,
            seed=config.seed, node="", cohort_size=config.cohort_size, work=work,
            data_of=lambda key: self.client_data(key), client=config.client,
            local_names=self.local, local_init=self.local_init)

    @property
    def local_store(self) -> dict[str, Params]:
        return self.engine.local_store

    def load_global(self, model: torch.nn.Module) -> None:
        """The global model: server parameters plus the initial values of local ones."""
        load_params(model, self.server.snapshot(), self.local_init)

    def client_data(self, key: Any) -> ClientData:
        """The packed training rows of client ``key`` (read and tokenized for every round)."""
        cfg = self.config
        return pack_client(
            self.source.group(key), self.tokenizer, text_column=cfg.data.text_column,
            seq_len=cfg.model.seq_len, max_sequences=cfg.client.max_sequences,
            eos_id=self.eos_id,
        )

    def run_round(self, round_: int) -> dict[str, float]:
        cfg = self.config
        res = self.engine.run_round(round_, self.source.keys, server_config=cfg.server,
                                    total_rounds=cfg.rounds)
        agg = res.aggregate
        loss_tokens = agg.stat("loss_tokens")
        return {
            "train_loss": agg.stat("loss_sum") / loss_tokens if loss_tokens else float("nan"),
            "cohort": float(len(res.cohort)),
            "clients": agg.stat("clients"),
            "skipped": agg.stat("skipped"),
            "tokens": loss_tokens,
            "examples": agg.stat("examples"),
            "steps": agg.stat("steps"),
            "server_lr": res.lr,
            **res.metrics,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"server": self.server.state_dict(), **self.engine.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.server.load_state_dict(state["server"])
        self.engine.load_state_dict(state)
