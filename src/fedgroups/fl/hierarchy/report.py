"""Records of a hierarchical run built from the live tree (the files: ``records.py``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from fedgroups.fl.hierarchy import records as rec
from fedgroups.fl.hierarchy.build import Plan
from fedgroups.fl.hierarchy.config import HierarchyConfig, settings_dict
from fedgroups.fl.hierarchy.node import FedNode


def node_row(node: FedNode, r: int, method: str, seconds: float | None
              ) -> rec.NodeRoundRecord | None:
    w = node.take_window()
    if w["inner_rounds"] == 0:
        return None
    secs = seconds if seconds is not None else w["seconds"]
    eps = node.dp_epsilon()
    return rec.NodeRoundRecord(
        method=method, round=r, node=node.path, level=node.level,
        kind="root" if node.level == 0 else "leaf" if node.is_leaf else "federation",
        inner_rounds=int(w["inner_rounds"]),
        train_loss=w["loss_sum"] / w["tokens"] if w["tokens"] else math.nan,
        clients=int(w["clients"]), skipped=int(w["skipped"]), tokens=int(w["tokens"]),
        examples=int(w["examples"]), steps=int(w["steps"]),
        cum_tokens=int(node.cumulative["tokens"]), cum_steps=int(node.cumulative["steps"]),
        server_lr=node.last_lr, dp_epsilon=eps,
        dp_delta=node.settings.privacy.delta if node.settings.privacy else None,
        seconds=secs, tokens_per_s=w["tokens"] / secs if secs > 0 else 0.0,
        extra=dict(node.processor_metrics),  # e.g. dp/fraction_clipped, dp/noise_std
    )


def eval_columns(evals: list[rec.EvalRecord], r: int) -> dict[str, float]:
    means = [e.loss for e in evals if e.round == r and e.federation == rec.MEAN_FEDERATION]
    return {"eval/mean/loss": means[-1]} if means else {}


def run_summary(method: str, rounds: int, root: FedNode, totals: dict[str, float],
             evals: list[rec.EvalRecord], nodes: dict[str, FedNode], model: torch.nn.Module,
             keys: list[str]) -> rec.RunSummary:
    last_round = max((e.round for e in evals), default=None)
    latest = [e for e in evals if e.round == last_round]
    mean = next((e for e in latest if e.federation == rec.MEAN_FEDERATION), None)
    params = dict(model.named_parameters())
    secs = totals["seconds"]
    return rec.RunSummary(
        method=method, rounds=rounds, client_updates=int(totals["client_updates"]),
        steps=int(root.cumulative["steps"]), tokens=int(root.cumulative["tokens"]),
        seconds=secs, tokens_per_s=root.cumulative["tokens"] / secs if secs > 0 else 0.0,
        eval_loss=mean.loss if mean else None, eval_ppl=mean.ppl if mean else None,
        federations={e.federation: {"loss": e.loss, "ppl": e.ppl, "tokens": e.tokens,
                                    "dp_epsilon": e.dp_epsilon}
                     for e in latest if e.federation != rec.MEAN_FEDERATION},
        parameters=sum(p.numel() for p in params.values()),
        key_parameters=sum(params[n].numel() for n in keys),
    )


def write_tree(run_dir: Path, plan: Plan, root: FedNode, settings: dict[str, Any],
                hier: HierarchyConfig) -> None:
    held = {lf.node.path: len(lf.held_out) for lf in plan.leaves}
    out = []
    for n in root.walk():
        sub = n.walk()
        out.append(rec.to_json(rec.TreeNodeRecord(
            path=n.path, name=n.path.rsplit("/", 1)[-1], level=n.level,
            kind="root" if n.level == 0 else "leaf" if n.is_leaf else "federation",
            parent=n.path.rsplit("/", 1)[0] if "/" in n.path else None,
            children=[c.path for c in n.children],
            train_clients=sum(len(m.clients) for m in sub),
            eval_clients=(sum(held.values()) if n.level == 0 else
                          sum(held.get(m.path, 0) for m in sub)),
            settings=settings_dict(settings[n.path]))))
    leaves = [lf.node.path for lf in plan.leaves]
    rec.write_json(run_dir / rec.TREE_FILE, {"version": rec.RECORDS_VERSION,
                                             "method": hier.method, "nodes": out,
                                             "eval_federations": leaves})


def summary_table(summary: rec.RunSummary) -> str:
    """The last evaluation per leaf federation, and the run's totals, as aligned text."""
    lines = [f"method {summary.method}: {summary.rounds} root rounds, "
             f"{summary.client_updates} client updates, {summary.steps} steps, "
             f"{summary.tokens} tokens, {summary.tokens_per_s:.0f} tokens/s"]
    width = max([len(f) for f in summary.federations] + [10])
    lines.append(f"{'federation':<{width}}  {'loss':>8}  {'ppl':>9}  {'tokens':>8}  epsilon")
    for fed, v in summary.federations.items():
        eps = v.get("dp_epsilon")
        lines.append(f"{fed:<{width}}  {_num(v['loss'], 4):>8}  {_num(v['ppl'], 2):>9}  "
                     f"{int(v['tokens'] or 0):>8}  {'-' if eps is None else _num(eps, 2)}")
    lines.append(f"{'mean (tokens)':<{width}}  {_num(summary.eval_loss, 4):>8}  "
                 f"{_num(summary.eval_ppl, 2):>9}")
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None else str(value)
    return f"{value:.{digits}f}"
