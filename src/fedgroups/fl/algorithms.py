"""The FedOpt family as three small pieces: client update, running aggregate, server update.

* :func:`client_update` trains one client from the global weights and returns a
  :class:`ClientUpdate` whose ``delta`` is (client weights - global weights) for the
  aggregated parameters.  FedAvg runs a client optimizer for some steps/epochs; FedSGD
  computes one full-batch gradient and reports ``delta = -gradient``.
* :class:`Aggregator` keeps a weighted running sum of deltas (memory = one model, whatever
  the cohort size) plus a few float64 counters; ``merge`` / ``all_reduce`` combine partial
  aggregates (ranks today, sub-federations next).
* :class:`Server` applies a torch optimizer to the pseudo-gradient ``-mean(delta)``.
  Server SGD with lr 1 is FedAvg; with lr η after FedSGD it is large-batch SGD.

A participant in a round is anything that returns a ``ClientUpdate``: a client today, a
whole federation (its aggregated delta over its own rounds) in a hierarchy.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fedgroups.fl.client_data import ClientData, iter_batches
from fedgroups.fl.config import (
    AlgorithmName,
    ClientConfig,
    ConfigError,
    OptimizerConfig,
    WeightingName,
)
from fedgroups.fl.model import lm_loss

Params = dict[str, torch.Tensor]


def make_optimizer(
    params: Iterable[torch.Tensor], config: OptimizerConfig
) -> torch.optim.Optimizer:
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "momentum":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        # The fused kernel is 2-3x faster than the default per-tensor loop for small models
        # on CPU (profiled: Adam was ~12% of a tiny round); same update rule.
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(
            params, lr=config.lr, betas=config.betas, eps=config.eps,
            weight_decay=config.weight_decay, fused=fused or None,
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}")  # config parsing prevents this


def split_param_names(names: Sequence[str], local_globs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(aggregated, local) parameter names; local ones match any of ``local_globs``."""
    local = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in local_globs)]
    unmatched = [g for g in local_globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if unmatched:
        raise ConfigError(
            f"algorithm.local_params: {unmatched} match no parameter; names look like "
            f"{names[:3]} ... (see fl/model.py)"
        )
    return [n for n in names if n not in local], local


# --- client ----------------------------------------------------------------------------


@dataclass
class ClientUpdate:
    key: Any
    num_examples: int  # examples behind the client's data
    num_tokens: int  # target tokens in the client's data
    loss_sum: float  # sum over steps of (batch mean loss * batch tokens)
    loss_tokens: int  # tokens processed in training (the denominator of loss_sum)
    steps: int
    finite: bool
    delta: Iterable[tuple[str, torch.Tensor]]  # lazily computed; consume once
    # Algorithm extras, summed over the round's clients with weight 1 (fl/algorithm.py):
    extras: Mapping[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    # What the client keeps until it takes part again (None: nothing); fl/algorithm.py.
    state: Params | None = None

    def read_delta(self) -> ClientUpdate:
        """This update with its delta read out of the model now (a list), for when the model
        trains another client before this update is aggregated (client_pool.py)."""
        return dataclasses.replace(self, delta=list(self.delta)) if self.finite else self

    def weight(self, weighting: WeightingName) -> float:
        if weighting == "uniform":
            return 1.0
        if weighting == "examples":
            return float(self.num_examples)
        return float(self.num_tokens)


def _params_delta(model: nn.Module, names: Sequence[str], start: Mapping[str, torch.Tensor]
                  ) -> Iterator[tuple[str, torch.Tensor]]:
    params = dict(model.named_parameters())
    for n in names:
        yield n, params[n].detach() - start[n]


def _neg_grads(model: nn.Module, names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
    params = dict(model.named_parameters())
    for n in names:
        g = params[n].grad
        yield n, torch.zeros_like(params[n]) if g is None else -g


def client_update(
    model: nn.Module,
    data: ClientData,
    config: ClientConfig,
    algorithm: AlgorithmName,
    *,
    start: Mapping[str, torch.Tensor],
    aggregated: Sequence[str],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    after_backward: Callable[[], None] | None = None,
) -> ClientUpdate:
    """Train ``model`` (already loaded with ``start``) on ``data``; return its update.

    ``after_backward`` runs after every backward pass, before gradient clipping and the
    optimizer step: an algorithm's change to the gradients (FedProx's proximal pull,
    SCAFFOLD's correction) without a loop of its own.
    """
    if data.num_sequences == 0:  # the loop below would never end
        raise ValueError(f"client {data.key!r} has no sequences to train on; skip clients "
                         "below client.min_sequences (>= 1) before calling client_update")
    seqs = data.sequences.to(device)
    if algorithm == "fedsgd":
        return _fedsgd(model, data, seqs, config, aggregated)
    opt = make_optimizer(model.parameters(), config)
    gen = generator if config.shuffle else None
    target_steps = config.local_steps
    epochs = config.local_epochs or 1
    loss_sum, loss_tokens, steps = 0.0, 0, 0
    epoch = 0
    while (steps < target_steps) if target_steps is not None else (epoch < epochs):
        for batch in iter_batches(seqs, config.batch_size, gen):
            loss = lm_loss(model, batch)
            value = loss.item()
            if not math.isfinite(value):
                return _nonfinite(data, loss_sum, loss_tokens, steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward()
            if config.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            opt.step()
            tokens = batch.shape[0] * (batch.shape[1] - 1)
            loss_sum += value * tokens
            loss_tokens += tokens
            steps += 1
            if target_steps is not None and steps >= target_steps:
                break
        epoch += 1
    return ClientUpdate(
        key=data.key, num_examples=data.num_examples, num_tokens=data.num_tokens,
        loss_sum=loss_sum, loss_tokens=loss_tokens, steps=steps, finite=True,
        delta=_params_delta(model, aggregated, start),
    )


def _fedsgd(model: nn.Module, data: ClientData, seqs: torch.Tensor, config: ClientConfig,
            aggregated: Sequence[str]) -> ClientUpdate:
    """One gradient of the mean token loss over all of the client's data (in chunks)."""
    model.zero_grad(set_to_none=True)
    total = data.num_tokens
    loss_sum = 0.0
    for batch in iter_batches(seqs, config.batch_size, None):
        tokens = batch.shape[0] * (batch.shape[1] - 1)
        loss = lm_loss(model, batch)
        value = loss.item()
        if not math.isfinite(value):
            return _nonfinite(data, loss_sum, 0, 0)
        (loss * (tokens / total)).backward()
        loss_sum += value * tokens
    if config.grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
    return ClientUpdate(
        key=data.key, num_examples=data.num_examples, num_tokens=total, loss_sum=loss_sum,
        loss_tokens=total, steps=1, finite=True, delta=_neg_grads(model, aggregated),
    )


def _nonfinite(data: ClientData, loss_sum: float, loss_tokens: int, steps: int) -> ClientUpdate:
    return ClientUpdate(
        key=data.key, num_examples=data.num_examples, num_tokens=data.num_tokens,
        loss_sum=loss_sum, loss_tokens=loss_tokens, steps=steps, finite=False, delta=(),
    )


# --- aggregate -------------------------------------------------------------------------

STAT_NAMES = ("clients", "skipped", "nonfinite", "weight", "loss_sum", "loss_tokens",
              "tokens", "examples", "steps")


class Aggregator:
    """Weighted running sum of deltas plus float64 counters (``STAT_NAMES``)."""

    def __init__(self, template: Mapping[str, torch.Tensor]) -> None:
        self.sums: Params = {n: torch.zeros_like(t, dtype=torch.float32) for n, t in template.items()}
        self.extras: Params = {}  # sum over clients of ClientUpdate.extras (weight 1 each)
        self.stats = torch.zeros(len(STAT_NAMES), dtype=torch.float64)

    def stat(self, name: str) -> float:
        return float(self.stats[STAT_NAMES.index(name)])

    def count(self, name: str, value: float = 1.0) -> None:
        self.stats[STAT_NAMES.index(name)] += value

    def stats_dict(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(STAT_NAMES, self.stats.tolist())}

    def add(self, update: ClientUpdate, weight: float,
            delta: Iterable[tuple[str, torch.Tensor]] | None = None) -> None:
        """Add ``weight * delta`` (default ``update.delta``) and ``update``'s counters."""
        if not update.finite:
            self.count("nonfinite")
            return
        for name, d in (update.delta if delta is None else delta):
            self.sums[name].add_(d.to(torch.float32), alpha=weight)
        for name, e in update.extras.items():
            if name in self.extras:
                self.extras[name].add_(e.to(torch.float32))
            else:
                self.extras[name] = e.detach().to(torch.float32).clone()
        for name, value in (
            ("clients", 1), ("weight", weight), ("loss_sum", update.loss_sum),
            ("loss_tokens", update.loss_tokens), ("tokens", update.num_tokens),
            ("examples", update.num_examples), ("steps", update.steps),
        ):
            self.count(name, value)

    def merge(self, other: Aggregator) -> None:
        for n, s in other.sums.items():
            self.sums[n].add_(s)
        for n, e in other.extras.items():
            self.extras[n] = self.extras[n] + e if n in self.extras else e.clone()
        self.stats += other.stats

    def all_reduce(self) -> None:
        """Sum over all ranks of the default torch.distributed group (one flat buffer)."""
        import torch.distributed as dist

        tensors = [*self.sums.values(), *(self.extras[n] for n in sorted(self.extras))]
        if self.extras or tensors:
            # Every rank must hold the same extras names: a rank whose clients were all
            # skipped has none, so the names travel first.
            names: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(names, {n: tuple(t.shape) for n, t in self.extras.items()})
            for shapes in names:
                for n, shape in shapes.items():
                    self.extras.setdefault(n, torch.zeros(shape, dtype=torch.float32))
            tensors = [*self.sums.values(), *(self.extras[n] for n in sorted(self.extras))]
        if tensors:
            flat = torch.cat([t.reshape(-1) for t in tensors])
            dist.all_reduce(flat)
            offset = 0
            for t in tensors:
                k = t.numel()
                t.copy_(flat[offset : offset + k].view_as(t))
                offset += k
        dist.all_reduce(self.stats)

    def total(self) -> Params:
        """The weighted sum of deltas (a robust aggregator returns its estimate * weight)."""
        return self.sums

    def mean(self) -> Params:
        w = self.stat("weight")
        if w <= 0:
            raise ValueError("no client contributed to this round")
        return {n: s / w for n, s in self.sums.items()}


# --- server ----------------------------------------------------------------------------


class Server:
    """Global (aggregated) parameters and the server optimizer over them."""

    def __init__(self, params: Mapping[str, torch.Tensor], config: OptimizerConfig) -> None:
        self.params = {n: nn.Parameter(t.detach().clone()) for n, t in params.items()}
        self.optimizer = make_optimizer(self.params.values(), config)

    def step(self, mean_delta: Mapping[str, torch.Tensor], lr: float) -> None:
        for n, p in self.params.items():
            p.grad = (-mean_delta[n]).to(p.dtype)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def snapshot(self) -> Params:
        return {n: p.detach() for n, p in self.params.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.snapshot(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["params"][n])
        self.optimizer.load_state_dict(state["optimizer"])


def load_params(model: nn.Module, *sources: Mapping[str, torch.Tensor]) -> None:
    """Copy named tensors from ``sources`` (later ones win) into ``model``'s parameters."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for source in sources:
            for n, t in source.items():
                params[n].copy_(t)
