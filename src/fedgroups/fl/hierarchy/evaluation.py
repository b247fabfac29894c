"""Evaluation of a hierarchical run: each leaf federation's model on its held-out groups.

A leaf's model is the root's backbone plus the leaf's own key layers (``fl``: the global
model; ``local``: the leaf's whole model is its key layers).  Metrics as the flat trainer's
(``fl/personalization.py``): token-weighted loss and perplexity per leaf, the
token-weighted mean over leaves, and personalization percentiles.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fedgroups.fl.algorithms import Params, load_params
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.hierarchy import records as rec
from fedgroups.fl.hierarchy.build import Plan
from fedgroups.fl.hierarchy.node import FedNode
from fedgroups.fl.personalization import evaluate, percentiles, personalize


def eval_params(root: FedNode, leaf: str, method: str) -> Params:
    """A leaf federation's model: the root's backbone plus the leaf's own key layers."""
    if method == "fl":
        return dict(root.server.snapshot())
    backbone = root.server.snapshot() if root.server is not None else {}
    node = next(n for n in root.walk() if n.path == leaf)
    return {**backbone, **node.own_keys()}


def pack_held_out(clients: Any, tokenizer: Any, eos_id: int, config: TrainConfig) -> list[ClientData]:
    out = []
    for ds, key in clients:
        data = pack_client(ds.group(key), tokenizer, text_column=config.data.text_column,
                           seq_len=config.model.seq_len,
                           max_sequences=config.eval.max_sequences, eos_id=eos_id)
        if data.num_sequences > 0:
            out.append(data)
    return out


def evaluate_leaves(plan: Plan, root: FedNode, method: str, eval_model: torch.nn.Module,
              scratch: torch.nn.Module, held_out: dict[str, list[ClientData]],
              config: TrainConfig, r: int) -> list[rec.EvalRecord]:
    """Every leaf after 0-based root round ``r``; records name ``r + 1`` (rounds done)."""
    pers = config.personalization
    do_pers = pers.enabled and (r + 1 == config.rounds
                                or (pers.every and (r + 1) % pers.every == 0))
    nodes = {n.path: n for n in root.walk()}
    out = []
    pre_all: list[float] = []
    post_all: list[float] = []
    for lf in plan.leaves:
        path = lf.node.path
        clients = held_out[path]
        load_params(eval_model, eval_params(root, path, method))
        res = evaluate(eval_model, clients, config.eval.batch_size, config.run.device)
        extra: dict[str, Any] = {}
        if do_pers and clients:
            p = personalize(eval_model, scratch, clients, pers,
                            eval_batch_size=config.eval.batch_size, seed=config.seed,
                            device=config.run.device)
            extra = _pers_columns(p.pre, p.post)
            pre_all.extend(p.pre)
            post_all.extend(p.post)
        node = nodes.get(path)
        out.append(rec.EvalRecord(
            method=method, round=r + 1, federation=path, level=lf.node.level, loss=res.loss,
            ppl=perplexity(res.loss), tokens=sum(c.num_tokens for c in clients),
            clients=len(clients), dp_epsilon=node.dp_epsilon() if node else None, **extra))
    scored = [e for e in out if e.tokens > 0 and math.isfinite(e.loss)]
    tokens = sum(e.tokens for e in scored)
    mean = math.fsum(e.loss * e.tokens for e in scored) / tokens if tokens else math.nan
    out.append(rec.EvalRecord(method=method, round=r + 1, federation=rec.MEAN_FEDERATION,
                              level=-1, loss=mean, ppl=perplexity(mean), tokens=tokens,
                              clients=sum(e.clients for e in scored),
                              **(_pers_columns(pre_all, post_all) if do_pers else {})))
    return out


def _pers_columns(pre: list[float], post: list[float]) -> dict[str, float]:
    """pers_pre_p10 ... pers_post_p90: percentiles over held-out clients, as the flat trainer."""
    both = {**percentiles(pre, "pers/pre"), **percentiles(post, "pers/post")}
    return {k.replace("/", "_"): v for k, v in both.items()}


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else math.inf
