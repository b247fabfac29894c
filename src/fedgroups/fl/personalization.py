"""Evaluation of the global model on held-out clients, before and after personalization.

Personalization of one eval client: fine-tune a copy of the global model on the first
``fraction`` of the client's sequences, then compare the loss on the rest before (global
model) and after (fine-tuned copy).  Reported as percentiles across clients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedgroups.fl.algorithms import make_optimizer
from fedgroups.fl.client_data import ClientData, iter_batches
from fedgroups.fl.config import PersonalizationConfig
from fedgroups.fl.model import lm_loss

PERCENTILES = (10, 50, 90)


@torch.no_grad()
def sequence_loss(model: nn.Module, seqs: torch.Tensor, batch_size: int) -> tuple[float, int]:
    """(token-weighted mean loss, tokens) of ``model`` on ``seqs`` (N, T + 1)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for batch in iter_batches(seqs, batch_size, None):
        n = batch.shape[0] * (batch.shape[1] - 1)
        total += lm_loss(model, batch).item() * n
        tokens += n
    model.train(was_training)
    return (total / tokens if tokens else math.nan), tokens


def percentiles(values: Sequence[float], prefix: str) -> dict[str, float]:
    if not values:
        return {f"{prefix}_p{q}": math.nan for q in PERCENTILES}
    qs = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    return {f"{prefix}_p{q}": float(v) for q, v in zip(PERCENTILES, qs)}


@dataclass(frozen=True)
class EvalResult:
    loss: float  # token-weighted over all eval clients' sequences
    client_losses: list[float]

    def metrics(self, prefix: str) -> dict[str, float]:
        ppl = math.exp(self.loss) if self.loss < 50 else math.inf
        out = {f"{prefix}/loss": self.loss, f"{prefix}/ppl": ppl,
               f"{prefix}/clients": float(len(self.client_losses))}
        out.update(percentiles(self.client_losses, f"{prefix}/loss"))
        return out


def evaluate(model: nn.Module, clients: Sequence[ClientData], batch_size: int,
             device: torch.device | str = "cpu") -> EvalResult:
    total, tokens, per_client = 0.0, 0, []
    for c in clients:
        loss, n = sequence_loss(model, c.sequences.to(device), batch_size)
        per_client.append(loss)
        total += loss * n
        tokens += n
    return EvalResult(loss=total / tokens if tokens else math.nan, client_losses=per_client)


@dataclass(frozen=True)
class PersonalizationResult:
    pre: list[float]  # per client, loss of the global model on the held-out part
    post: list[float]  # per client, loss of the fine-tuned copy on the same part
    skipped: int  # clients with fewer than 2 sequences

    def metrics(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}/clients": float(len(self.pre)), f"{prefix}/skipped": float(self.skipped)}
        out.update(percentiles(self.pre, f"{prefix}/pre"))
        out.update(percentiles(self.post, f"{prefix}/post"))
        return out


def personalize(
    global_model: nn.Module,
    scratch: nn.Module,
    clients: Sequence[ClientData],
    config: PersonalizationConfig,
    *,
    eval_batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> PersonalizationResult:
    """Fine-tune ``scratch`` (reloaded from ``global_model`` per client) on each client."""
    pre, post, skipped = [], [], 0
    state = global_model.state_dict()
    for i, c in enumerate(clients):
        n = c.num_sequences
        if n < 2:
            skipped += 1
            continue
        k = min(n - 1, max(1, round(n * config.fraction)))
        train, test = c.sequences[:k].to(device), c.sequences[k:].to(device)
        pre.append(sequence_loss(global_model, test, eval_batch_size)[0])
        scratch.load_state_dict(state)
        client_seed = seed * 1_000_003 + i
        with torch.random.fork_rng(devices=[]):  # dropout, if the model has any, is seeded
            torch.manual_seed(client_seed)
            _fine_tune(scratch, train, config, torch.Generator().manual_seed(client_seed))
        post.append(sequence_loss(scratch, test, eval_batch_size)[0])
    return PersonalizationResult(pre=pre, post=post, skipped=skipped)


def _fine_tune(model: nn.Module, seqs: torch.Tensor, config: PersonalizationConfig,
               generator: torch.Generator) -> None:
    opt = make_optimizer(model.parameters(), config)
    steps, epoch = 0, 0
    epochs = config.epochs or 1
    while (steps < config.steps) if config.steps is not None else (epoch < epochs):
        for batch in iter_batches(seqs, config.batch_size, generator):
            opt.zero_grad(set_to_none=True)
            lm_loss(model, batch).backward()
            if config.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            opt.step()
            steps += 1
            if config.steps is not None and steps >= config.steps:
                break
        epoch += 1
