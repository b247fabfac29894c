"""A federation as a participant: receive weights, run own rounds, return an update.

Every node of the tree is a :class:`FedNode`.  One round of a node is the flat trainer's
round — the same :class:`~fedgroups.fl.engine.RoundEngine` (selection, the algorithm's
client update, processors, aggregation, server step); a child is
either a client (a group) or a sub-federation, whose
``participate`` returns a ``ClientUpdate`` like a client's: ``delta`` = its backbone after
its rounds minus the backbone it received, weighted by its tokens.

Parameters are split into the backbone B and the key layers K:

* a **leaf federation** (children are clients) runs FedOpt over B and K together; its K is
  its own and stays with it;
* a **federation of federations** runs FedOpt over B only.  Its children's K are mixed by
  ``mode``: ``"attention"`` (WorldLM), ``"mean"`` (the ablation) or ``"none"`` (FedPer,
  Local).  Its own K is the weighted mean of its children's, which is what it sends up;
  when its parent personalises that K, the change is applied to every descendant's K
  (:meth:`FedNode.set_keys`), so information from cousins reaches the leaves.

Memory: one running aggregate per active level and one K per node (plus ``nu`` residual
copies per sub-federation); no list of client updates is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from fedgroups.fl.algorithms import ClientUpdate, Params, Server, make_optimizer
from fedgroups.fl.backends import Backend, SequentialBackend
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.client_pool import ClientPool
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.engine import ClientWork, RoundEngine
from fedgroups.fl.errors import NonFiniteLossError
from fedgroups.fl.hierarchy import attention, residual
from fedgroups.fl.hierarchy.config import Settings
from fedgroups.fl.hierarchy.privacy import dp_epsilon, sampling_rate
from fedgroups.fl.hierarchy.records import AttentionRecord
from fedgroups.fl.strategy import Strategy

__all__ = ["FedNode", "NonFiniteLossError", "Shared", "node_seed"]

MixMode = Literal["attention", "mean", "none"]
COUNTERS = ("clients", "skipped", "tokens", "data_tokens", "examples", "steps", "loss_sum",
            "inner_rounds")


def node_seed(seed: int, path: str, is_root: bool) -> int:
    """The root uses the run's seed (so a one-node tree is the flat trainer); others derive."""
    if is_root:
        return seed
    return int(np.random.SeedSequence([seed, *path.encode()]).generate_state(1)[0])


@dataclass
class Shared:
    """What every node of one run uses: the scratch model, data access, the split of names."""

    model: torch.nn.Module
    tokenizer: Any
    eos_id: int
    config: TrainConfig
    backbone: list[str]  # B
    key_names: list[str]  # K
    method: str
    mode: MixMode
    residuals: int  # nu
    device: torch.device | str = "cpu"
    on_attention: Any = None  # called with each AttentionRecord, or None
    root_round: int = 0  # set by the runner: attention records name it
    level_backbones: dict[int, dict[str, torch.nn.Parameter]] = field(default_factory=dict)
    pool: ClientPool | None = None  # run.client_threads > 1: leaf clients trained at once
    # Leaf clients of a round spread over ranks (cohort position i on rank i % world);
    # every rank walks the same tree and reduces each leaf round's aggregate.
    backend: Backend = field(default_factory=SequentialBackend)
    _work: ClientWork | None = None

    def work(self) -> ClientWork:
        """How leaf clients are trained (the scratch model, threads, ranks): one per run."""
        if self._work is None:
            self._work = ClientWork(model=self.model, device=self.device,
                                    threads=self.config.run.client_threads,
                                    backend=self.backend, _pool=self.pool)
        return self._work

    def client_data(self, client: tuple[Any, Any]) -> ClientData:
        dataset, key = client
        cfg = self.config
        return pack_client(dataset.group(key), self.tokenizer, text_column=cfg.data.text_column,
                           seq_len=cfg.model.seq_len, max_sequences=cfg.client.max_sequences,
                           eos_id=self.eos_id)

    def level_backbone(self, level: int, init: Params) -> dict[str, torch.nn.Parameter]:
        """One set of backbone tensors per tree level, shared by that level's servers.

        Below the root a node's backbone is scratch: it is overwritten with the parent's
        at the start of every participation, and nodes of one level never run at the same
        time (depth first).  Sharing it makes memory grow with the key layers per node,
        not with the model.
        """
        if level not in self.level_backbones:
            self.level_backbones[level] = {
                n: torch.nn.Parameter(init[n].detach().clone()) for n in self.backbone}
        return self.level_backbones[level]


class FedNode:
    def __init__(self, *, path: str, level: int, settings: Settings, shared: Shared,
                 strategy: Strategy, dp: Any = None, children: Sequence[FedNode] = (),
                 clients: Sequence[tuple[Any, Any]] = (), init: Params, total_rounds: int,
                 is_root: bool = False) -> None:
        self.path, self.level, self.settings, self.shared = path, level, settings, shared
        self.strategy = strategy
        self.dp = dp  # the DP processor among strategy.processors (its round count)
        self.children = list(children)
        self.clients = tuple(clients)  # (dataset, key) pairs: a leaf federation's clients
        self.is_leaf = not self.children
        self.seed = node_seed(shared.config.seed, path, is_root)
        self.names = shared.backbone + shared.key_names if self.is_leaf else shared.backbone
        self.server = (strategy.make_server({n: init[n] for n in self.names}, settings.server)
                       if self.names else None)
        # Only the default Server is known to keep its tensors in ``params``.
        self.shares_backbone = (not is_root and type(self.server) is Server
                                and bool(shared.backbone))
        if self.shares_backbone:
            self.server.params.update(shared.level_backbone(level, init))
            self.server.optimizer = make_optimizer(self.server.params.values(), settings.server)
        # A federation of federations keeps its own K; a leaf's K lives in its server.
        self.keys: Params = ({n: init[n].detach().clone() for n in shared.key_names}
                             if self.mixes_keys() else {})
        self.total_rounds = total_rounds  # this node's rounds in the whole run (schedules)
        self.rounds_done = 0
        self.pool: list[residual.Residual] = []  # residual keys given by the parent
        self.pools: dict[str, list[residual.Residual]] = {}  # what this node routes
        self.offered: list[residual.Residual] = []  # this node's last offer to its parent
        self.window = dict.fromkeys(COUNTERS, 0.0)  # work since the runner last read it
        self.cumulative = {"tokens": 0.0, "steps": 0.0}
        self.last_lr = math.nan
        self.seconds = 0.0
        self.processor_metrics: dict[str, float] = {}
        self.engine = RoundEngine(
            strategy=strategy, server=self.server, names=self.names, seed=self.seed,
            node=path, cohort_size=settings.cohort_size, work=shared.work(),
            data_of=shared.client_data, client=shared.config.client)

    # --- key layers --------------------------------------------------------------------

    def own_keys(self) -> Params:
        if self.is_leaf:
            if self.server is None:
                return {}
            return {n: self.server.params[n].detach() for n in self.shared.key_names}
        return self.keys

    def set_keys(self, new: Params) -> None:
        """Replace this node's K; a federation shifts every descendant's K by the change."""
        if self.is_leaf:
            with torch.no_grad():
                for n, t in new.items():
                    self.server.params[n].copy_(t)
            return
        shift = {n: new[n] - self.keys[n] for n in new}
        for child in self.children:
            child.set_keys({n: k + shift[n] for n, k in child.own_keys().items()})
        self.keys = {n: t.detach().clone() for n, t in new.items()}

    def mixes_keys(self) -> bool:
        return (not self.is_leaf and bool(self.shared.key_names)
                and self.shared.mode != "none")

    # --- one participation -------------------------------------------------------------

    def participate(self, start_b: Params, pool: list[residual.Residual]
                    ) -> tuple[ClientUpdate, dict[str, float]]:
        """Run ``settings.rounds`` rounds from the parent's backbone; return the update."""
        if self.server is not None:
            with torch.no_grad():
                for n in self.shared.backbone:
                    self.server.params[n].copy_(start_b[n])
        self.pool = pool
        counts = dict.fromkeys(COUNTERS, 0.0)
        for _ in range(self.settings.rounds):
            for k, v in self.run_round().items():
                counts[k] += v
        delta = {n: self.server.params[n].detach() - start_b[n] for n in self.shared.backbone} \
            if self.server is not None else {}
        update = ClientUpdate(
            key=self.path, num_examples=int(counts["examples"]),
            num_tokens=int(counts["data_tokens"]), loss_sum=counts["loss_sum"],
            loss_tokens=int(counts["tokens"]), steps=int(counts["steps"]), finite=True,
            delta=iter(delta.items()),
        )
        return update, counts

    def run_round(self) -> dict[str, float]:
        """One round of this node (the root's rounds are driven by the runner)."""
        t0 = time.perf_counter()
        r = self.rounds_done
        s = self.settings
        counts = dict.fromkeys(COUNTERS, 0.0)
        if self.is_leaf:
            res = self.engine.run_round(r, self.clients, server_config=s.server,
                                        total_rounds=self.total_rounds)
            agg = res.aggregate
            counts["clients"] = agg.stat("clients") + agg.stat("nonfinite")
            counts["skipped"] = agg.stat("skipped")
            for k in ("tokens", "examples", "steps", "loss_sum"):
                counts[k] = agg.stat({"tokens": "loss_tokens"}.get(k, k))
            counts["data_tokens"] = agg.stat("tokens")
        else:
            def participate(index: int, start: Params) -> ClientUpdate | None:
                child = self.children[index]
                update, child_counts = child.participate(
                    {n: start[n] for n in self.shared.backbone}, self.pools.get(child.path, []))
                for k in COUNTERS:
                    if k != "inner_rounds":
                        counts[k] += child_counts[k]
                # every client it sampled was skipped: the sub-federation is skipped
                return None if child_counts["clients"] == 0 else update

            res = self.engine.run_round(r, self.children, server_config=s.server,
                                        total_rounds=self.total_rounds,
                                        participate=participate)
        if res.stepped:
            self.last_lr = res.lr
            self.processor_metrics = res.metrics
        took_part = [(self.children[i], w) for i, w in res.took_part] if not self.is_leaf else []
        if took_part and self.mixes_keys():
            self._mix_keys(sorted(took_part, key=lambda cw: cw[0].path), r)
        subs = [c for c in self.children if c.mixes_keys()]
        if len(subs) > 1 and self.shared.residuals > 0:
            # Every sub-federation's latest offer, routed to the others for the next round.
            self.pools = residual.route({c.path: c.offered for c in subs})
        self.rounds_done += 1
        counts["inner_rounds"] = 1
        for k, v in counts.items():
            self.window[k] += v
        self.cumulative["tokens"] += counts["tokens"]
        self.cumulative["steps"] += counts["steps"]
        self.seconds += time.perf_counter() - t0
        return counts

    def _mix_keys(self, took_part: list[tuple[FedNode, float]], r: int) -> None:
        rows = [c.own_keys() for c, _ in took_part]
        weights = [w if w > 0 else 1e-12 for _, w in took_part]
        tau = math.inf if self.shared.mode == "mean" else self.settings.tau
        mixed, matrix = attention.attend(
            rows, weights, tau=tau, residuals=[p.keys for p in self.pool],
            residual_weights=[p.weight for p in self.pool])
        names = [c.path for c, _ in took_part]
        self.offered = residual.offer(names, rows, weights, matrix, self.shared.residuals)
        mean = attention.weighted_mean(rows, weights)
        for (child, _), k in zip(took_part, mixed):
            child.set_keys(k)
        self.keys = mean  # what this federation sends up: its children's weighted mean
        if self.shared.on_attention is not None:
            self.shared.on_attention(AttentionRecord(
                method=self.shared.method, round=self.shared.root_round, node_round=r,
                node=self.path, level=self.level, rows=names,
                columns=names + [p.source for p in self.pool],
                residual=[False] * len(names) + [True] * len(self.pool),
                matrix=matrix.tolist(), tau=tau))

    # --- reporting and state -----------------------------------------------------------

    def dp_epsilon(self) -> float | None:
        p = self.settings.privacy
        if p is None:
            return None
        steps = self.dp.rounds if self.dp is not None else 0
        q = sampling_rate(self.settings.cohort_size, len(self.clients))
        return dp_epsilon(p.noise_multiplier, q, steps, p.delta)

    def take_window(self) -> dict[str, float]:
        """Counters of this node's rounds since the last call (then reset), with seconds."""
        out = {**self.window, "seconds": self.seconds}
        self.window = dict.fromkeys(COUNTERS, 0.0)
        self.seconds = 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        server = self.server.state_dict() if self.server is not None else None
        if self.shares_backbone:  # scratch, overwritten before use: not saved
            server = {**server, "params": {n: t for n, t in server["params"].items()
                                           if n not in self.shared.backbone}}
        return {
            "server": server,
            "keys": self.keys,
            "rounds_done": self.rounds_done,
            **{k: v for k, v in self.engine.state_dict().items()},
            "pools": {k: [p.state_dict() for p in v] for k, v in self.pools.items()},
            "offered": [p.state_dict() for p in self.offered],
            "cumulative": dict(self.cumulative),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.server is not None:
            saved = state["server"]
            self.server.load_state_dict(
                {**saved, "params": {**self.server.snapshot(), **saved["params"]}})
        self.keys = {n: t.clone() for n, t in state["keys"].items()}
        self.rounds_done = int(state["rounds_done"])
        self.engine.load_state_dict(state)
        self.pools = {k: [residual.Residual.from_state(p) for p in v]
                      for k, v in state["pools"].items()}
        self.offered = [residual.Residual.from_state(p) for p in state["offered"]]
        self.cumulative = {k: float(v) for k, v in state["cumulative"].items()}

    def walk(self) -> list[FedNode]:
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out
