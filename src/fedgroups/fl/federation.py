"""One federation: cohort sampling, client updates, running aggregate, server update.

``Federation.run_round`` is the whole algorithm for one round; the simulation loop
(``fl/simulation.py``) adds evaluation, checkpoints and logging around it.  The cohort of
round ``r`` is a pure function of ``(seed, r)`` and client ``i``'s data order of
``(seed, r, i)``, so a resumed run and a run split over ranks see the same clients.

Parameters matching ``algorithm.local_params`` are not aggregated: each client keeps its
own copy across rounds (``local_store``, saved in checkpoints), starting from the initial
values.  What happens to each update (weighting, clipping, noise, the aggregator, the server
optimizer) is the run's :class:`~fedgroups.fl.strategy.Strategy`: from the config
(``algorithm`` and ``strategy`` sections) unless one is passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from fedgroups.fl.algorithms import (
    Aggregator,
    ClientUpdate,
    Params,
    load_params,
    split_param_names,
)
from fedgroups.fl.backends import Backend
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.client_pool import ClientPool
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.datasets import GroupSource
from fedgroups.fl.errors import ConfigError, NonFiniteLossError
from fedgroups.fl.schedules import server_lr
from fedgroups.fl.strategy import RoundContext, Strategy, strategy_from_config

ClientResult = tuple[ClientData, ClientUpdate | None, Params | None]


def cohort_keys(keys: tuple[Any, ...], cohort_size: int, seed: int, round_: int) -> list[Any]:
    """Keys of round ``round_``'s cohort: drawn without replacement, a function of (seed, round)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, round_]))
    chosen = rng.choice(len(keys), size=min(cohort_size, len(keys)), replace=False)
    return [keys[i] for i in chosen.tolist()]


def client_seed(seed: int, round_: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, round_, position]).generate_state(1)[0])


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
        if self.local and backend.world_size > 1:
            raise ConfigError("algorithm.local_params needs backend 'sequential' for now")
        params = dict(model.named_parameters())
        self.server = self.strategy.server({n: params[n] for n in self.aggregated}, config.server)
        self.local_init: Params = {n: params[n].detach().clone() for n in self.local}
        self.local_store: dict[str, Params] = {}
        self._pool: ClientPool | None = None  # run.client_threads > 1

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
        strategy = self.strategy
        keys = cohort_keys(self.source.keys, cfg.cohort_size, cfg.seed, round_)
        ctx = RoundContext(round=round_, seed=cfg.seed, num_participants=len(keys))
        start = {n: t.clone() for n, t in self.server.snapshot().items()}
        aggregate = strategy.aggregator(start)
        if self.backend.world_size > 1 and type(aggregate).total is not Aggregator.total:
            raise ConfigError(f"strategy.aggregator {type(aggregate).__name__} replaces total(): "
                              "it runs with backend 'sequential' only")
        first_bad = None
        for data, update, kept in self._client_results(keys, round_, start):
            if update is None:
                aggregate.count("skipped")
                continue
            if not update.finite:
                first_bad = data.key if first_bad is None else first_bad
                aggregate.add(update, 0.0)
            else:
                aggregate.add(update, strategy.weight(update), strategy.process_update(update, ctx))
            if kept is not None:
                self.local_store[str(data.key)] = kept
        self.backend.reduce(aggregate)
        if aggregate.stat("nonfinite") > 0:
            where = f" (e.g. client {first_bad!r})" if first_bad is not None else ""
            raise NonFiniteLossError(
                f"round {round_}: non-finite training loss in "
                f"{int(aggregate.stat('nonfinite'))} client(s){where}"
            )
        lr = server_lr(cfg.server.schedule, cfg.server.lr, round_, cfg.rounds)
        extra: dict[str, float] = {}
        if aggregate.stat("clients") > 0:
            self.server.step(strategy.mean_delta(aggregate, ctx), lr)
            extra = strategy.metrics()
        loss_tokens = aggregate.stat("loss_tokens")
        return {
            "train_loss": aggregate.stat("loss_sum") / loss_tokens if loss_tokens else float("nan"),
            "cohort": float(len(keys)),
            "clients": aggregate.stat("clients"),
            "skipped": aggregate.stat("skipped"),
            "tokens": loss_tokens,
            "examples": aggregate.stat("examples"),
            "steps": aggregate.stat("steps"),
            "server_lr": lr,
            **extra,
        }

    def _train_client(self, key: Any, pos: int, round_: int, start: Params,
                      model: torch.nn.Module, seeded: bool) -> ClientResult:
        """Client ``key`` (position ``pos`` of the cohort) trained from ``start`` on ``model``:
        (its data, its update or None if skipped, its local parameters to keep or None).
        ``seeded`` (the calling thread's own model): seed torch's global generator for the
        client (dropout, if the model has any), restoring it after. A worker thread passes
        False: the generator is shared, and its result waits while its model trains the
        next client."""
        cfg = self.config
        data = self.client_data(key)
        if data.num_sequences < cfg.client.min_sequences:
            return data, None, None
        load_params(model, start, self.local_store.get(str(data.key), self.local_init))
        seed = client_seed(cfg.seed, round_, pos)
        with torch.random.fork_rng(devices=[], enabled=seeded):
            if seeded:
                torch.manual_seed(seed)
            update = self.strategy.local_update(
                model, data, cfg.client, start=start, aggregated=self.aggregated,
                device=self.device, generator=torch.Generator().manual_seed(seed),
            )
        if not seeded:  # a worker thread's model moves on to the next client
            update = update.read_delta()
        kept = None
        if self.local and update.finite:
            params = dict(model.named_parameters())
            kept = {n: params[n].detach().clone() for n in self.local}
        return data, update, kept

    def _client_results(self, keys: list[Any], round_: int, start: Params,
                        ) -> Iterator[ClientResult]:
        """The results of this rank's cohort positions, in position order: one at a time,
        or ``run.client_threads`` at once (see client_pool.py; bit-identical either way)."""
        positions = self.backend.positions(len(keys))
        threads = self.config.run.client_threads
        if threads <= 1:
            for pos in positions:
                yield self._train_client(keys[pos], pos, round_, start, self.model, True)
            return
        if self._pool is None:
            self._pool = ClientPool(self.model, threads)
        yield from self._pool.ordered(
            lambda model, pos: self._train_client(keys[pos], pos, round_, start, model, False),
            positions)

    def state_dict(self) -> dict[str, Any]:
        return {"server": self.server.state_dict(), "local_store": self.local_store,
                "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.server.load_state_dict(state["server"])
        self.strategy.load_state_dict(state.get("strategy", []))
        self.local_store = {k: dict(v) for k, v in state["local_store"].items()}
