"""The round engine: one federation's round, for flat runs and for every node of a tree.

A flat run is a tree of one node: ``fl/federation.py`` drives one :class:`RoundEngine`
over clients; ``fl/hierarchy/node.py`` gives every federation of the tree its own, whose
members are clients (a leaf federation) or sub-federations.  One round::

    select (strategy.selection) -> configure (algorithm) -> local update (algorithm)
    -> skip / non-finite -> processors -> aggregate -> [ranks reduce] -> server step
    -> algorithm.server_update

The cohort of round ``r`` is a pure function of ``(seed, r)`` (the default selection) and
client ``i``'s data order and dropout of ``(seed, r, i)``, so a resumed run, a run with
``run.client_threads`` and a run split over ranks all see the same clients.

Per-client memory kept between rounds (saved in checkpoints, in this process): parameters
matching ``algorithm.local_params`` (``local_store``) and the algorithm's client state
(``client_states``), both keyed by the client's group key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedgroups.fl.algorithm import ClientTask
from fedgroups.fl.algorithms import Aggregator, ClientUpdate, Params, Server, load_params
from fedgroups.fl.backends import Backend, SequentialBackend
from fedgroups.fl.client_data import ClientData, iter_batches
from fedgroups.fl.client_pool import ClientPool
from fedgroups.fl.config import ConfigError, ServerConfig
from fedgroups.fl.errors import NonFiniteLossError
from fedgroups.fl.model import lm_loss
from fedgroups.fl.schedules import server_lr
from fedgroups.fl.strategy import RoundContext, Strategy

# A sub-federation (or any non-client member) taking part: its update, or None if skipped.
Participate = Callable[[int, Params], "ClientUpdate | None"]


def cohort_keys(keys: Sequence[Any], cohort_size: int, seed: int, round_: int) -> list[Any]:
    """Keys of round ``round_``'s cohort: drawn without replacement, a function of (seed, round)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, round_]))
    chosen = rng.choice(len(keys), size=min(cohort_size, len(keys)), replace=False)
    return [keys[i] for i in chosen.tolist()]


def client_seed(seed: int, round_: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, round_, position]).generate_state(1)[0])


@dataclass
class ClientWork:
    """What trains one client of a run: the scratch model, its device, threads, ranks."""

    model: torch.nn.Module
    device: torch.device | str = "cpu"
    threads: int = 1  # run.client_threads
    backend: Backend = dataclasses.field(default_factory=SequentialBackend)
    _pool: ClientPool | None = None

    def pool(self) -> ClientPool | None:
        if self.threads <= 1:
            return None
        if self._pool is None:
            self._pool = ClientPool(self.model, self.threads)
        return self._pool


@dataclass
class RoundResult:
    aggregate: Aggregator
    cohort: list[int]  # member indices, in cohort order
    took_part: list[tuple[int, float]]  # (member index, weight) of finite contributions
    lr: float  # the server lr of this round (a step was taken only if ``stepped``)
    stepped: bool
    metrics: dict[str, float]  # the strategy's per-round metrics (when stepped)


class RoundEngine:
    """One federation: its server, algorithm, selection and per-client memory."""

    def __init__(self, *, strategy: Strategy, server: Server | None, names: Sequence[str],
                 seed: int, node: str, cohort_size: int, work: ClientWork,
                 data_of: Callable[[Any], ClientData] | None = None,
                 client: Any = None, local_names: Sequence[str] = (),
                 local_init: Params | None = None) -> None:
        self.strategy = strategy
        self.server = server
        self.names = list(names)  # what clients' deltas cover (the server's parameters)
        self.seed, self.node, self.cohort_size = seed, node, cohort_size
        self.work = work
        self.data_of = data_of  # member -> its packed training data (clients only)
        self.client = client  # the ClientConfig clients train with
        self.local_names = list(local_names)
        self.local_init: Params = dict(local_init or {})
        self.local_store: dict[str, Params] = {}
        self.client_states: dict[str, Params] = {}
        self._probed: dict[int, ClientData] = {}  # this round's probed members' data
        if (strategy.algorithm.client_state or self.local_names) and work.backend.world_size > 1:
            what = ("algorithm.local_params" if self.local_names else
                    f"algorithm {strategy.algorithm.name!r} keeps per-client state and")
            raise ConfigError(f"{what} needs backend 'sequential' (ranks train different "
                              "clients every round, so a client's state would be on another "
                              "rank); run without --backend distributed")

    # --- one round ---------------------------------------------------------------------

    def run_round(self, r: int, members: Sequence[Any], *, server_config: ServerConfig,
                  total_rounds: int, participate: Participate | None = None) -> RoundResult:
        """Round ``r`` over ``members``: clients trained here (``participate`` None) or
        sub-federations, each asked by ``participate(index, start)`` for its update."""
        strategy, clients = self.strategy, participate is None
        start = ({n: t.clone() for n, t in self.server.snapshot().items()}
                 if self.server is not None else {})
        ctx = RoundContext(round=r, seed=self.seed, node=self.node,
                           num_members=len(members))
        self._probed = {}
        probe = (lambda i: self._probe(i, members[i], start)) if clients else None
        cohort = strategy.select(len(members), self.cohort_size, ctx, probe)
        ctx = dataclasses.replace(ctx, num_participants=len(cohort))
        aggregate = strategy.aggregator(start)
        backend = self.work.backend
        if clients and backend.world_size > 1 and type(aggregate).total is not Aggregator.total:
            raise ConfigError(f"strategy.aggregator {type(aggregate).__name__} replaces total(): "
                              "it runs with backend 'sequential' only")
        took_part: list[tuple[int, float]] = []
        first_bad = None
        results = (self._client_results(members, cohort, start, r, ctx) if clients
                   else ((i, participate(i, start), None) for i in cohort))
        for index, update, kept in results:
            if update is None:
                aggregate.count("skipped")
                continue
            if not update.finite:
                first_bad = update.key if first_bad is None else first_bad
                aggregate.add(update, 0.0)
                continue
            weight = strategy.weight(update)
            aggregate.add(update, weight, strategy.process_update(update, ctx))
            took_part.append((index, weight))
            if kept is not None:
                self.local_store[str(update.key)] = kept
            if update.state is not None:
                self.client_states[str(update.key)] = update.state
        self._probed = {}  # the round's data is not kept past it
        if clients:
            backend.reduce(aggregate)
        if aggregate.stat("nonfinite") > 0:
            where = (f"federation {self.node!r}, its round {r + 1}" if self.node
                     else f"round {r + 1}")  # rounds done, as records count them
            example = f" (e.g. client {first_bad!r})" if first_bad is not None else ""
            raise NonFiniteLossError(f"{where}: non-finite training loss in "
                                     f"{int(aggregate.stat('nonfinite'))} client(s){example}")
        lr = server_lr(server_config.schedule, server_config.lr, r, max(total_rounds, 1))
        stepped = (self.server is not None and aggregate.stat("clients") > 0
                   and aggregate.stat("weight") > 0)
        metrics: dict[str, float] = {}
        if stepped:
            self.server.step(strategy.mean_delta(aggregate, ctx), lr)
            metrics = strategy.metrics()
        if aggregate.stat("clients") > 0:
            strategy.algorithm.server_update(aggregate.extras, aggregate.stats_dict(), ctx)
        return RoundResult(aggregate=aggregate, cohort=cohort, took_part=took_part, lr=lr,
                           stepped=stepped, metrics=metrics)

    # --- clients -----------------------------------------------------------------------

    def _client_results(self, members: Sequence[Any], cohort: list[int], start: Params,
                        r: int, ctx: RoundContext
                        ) -> Iterator[tuple[int, ClientUpdate | None, Params | None]]:
        """This rank's cohort positions, in position order: one at a time, or
        ``run.client_threads`` at once (client_pool.py; bit-identical either way)."""
        positions = self.work.backend.positions(len(cohort))
        pool = self.work.pool()
        if pool is None:
            for pos in positions:
                index = cohort[pos]
                yield (index, *self.train_client(members[index], pos, r, start, ctx,
                                                 self.work.model, seeded=True,
                                                 data=self._probed.pop(index, None)))
            return

        def train(model: torch.nn.Module, pos: int) -> tuple[int, Any, Any]:
            index = cohort[pos]
            return (index, *self.train_client(members[index], pos, r, start, ctx, model,
                                              seeded=False, data=self._probed.get(index)))

        yield from pool.ordered(train, positions)

    def train_client(self, member: Any, pos: int, r: int, start: Params, ctx: RoundContext,
                     model: torch.nn.Module, *, seeded: bool, data: ClientData | None = None
                     ) -> tuple[ClientUpdate | None, Params | None]:
        """Member ``member`` (cohort position ``pos``) trained from ``start`` on ``model``:
        (its update or None if skipped, its local parameters to keep or None).

        ``seeded`` (the calling thread's own model): torch's global generator is seeded
        for the client (dropout, if the model has any) and restored after.  A worker
        thread passes False: the generator is shared, and the update's delta is read now
        because the model moves on to the next client.  ``data``: the member's packed data
        when the selection already read it (a probe), else it is read here."""
        data = self.data_of(member) if data is None else data
        if data.num_sequences < self.client.min_sequences:
            return None, None
        key = str(data.key)
        load_params(model, start, self.local_store.get(key, self.local_init))
        algo = self.strategy.algorithm
        task = ClientTask(key=data.key, start=start, payload=algo.configure(data.key, ctx),
                          state=self.client_states.get(key))
        seed = client_seed(self.seed, r, pos)
        with torch.random.fork_rng(devices=[], enabled=seeded):
            if seeded:
                torch.manual_seed(seed)
            update = algo.local_update(model, data, self.client, task,
                                       aggregated=self.names, device=self.work.device,
                                       generator=torch.Generator().manual_seed(seed))
        if not seeded:
            update = update.read_delta()
        kept = None
        if self.local_names and update.finite:
            params = dict(model.named_parameters())
            kept = {n: params[n].detach().clone() for n in self.local_names}
        return update, kept

    def _probe(self, index: int, member: Any, start: Params) -> float:
        """The current global model's mean token loss on ``member``'s data (for selection
        rules such as power-of-choice); nan when it has no data.  The data is kept for the
        round, so a probed member that is selected is not read and packed twice."""
        data = self._probed.get(index)
        if data is None:
            data = self._probed[index] = self.data_of(member)
        if data.num_sequences == 0:
            return math.nan
        model = self.work.model
        load_params(model, start, self.local_store.get(str(data.key), self.local_init))
        total, tokens = 0.0, 0
        with torch.no_grad():
            for batch in iter_batches(data.sequences.to(self.work.device),
                                      self.client.batch_size, None):
                n = batch.shape[0] * (batch.shape[1] - 1)
                total += float(lm_loss(model, batch)) * n
                tokens += n
        return total / tokens if tokens else math.nan

    # --- state -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"local_store": self.local_store, "client_states": self.client_states,
                "strategy": self.strategy.state_dict(),
                "algorithm": self.strategy.algorithm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.local_store = {k: dict(v) for k, v in state.get("local_store", {}).items()}
        self.client_states = {k: dict(v) for k, v in state.get("client_states", {}).items()}
        self.strategy.load_state_dict(state.get("strategy", []))
        self.strategy.algorithm.load_state_dict(state.get("algorithm", {}))
