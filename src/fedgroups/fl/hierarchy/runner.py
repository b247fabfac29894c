"""The hierarchical run: set up, train root round by root round, evaluate, checkpoint.

Order of work in a root round: the root samples its cohort of children; each child, in
cohort order, receives the root's backbone and runs all of its own rounds (recursively,
depth first) before the next child starts, so every child of a round starts from the same
weights (synchronous FedAvg at every level); then the root steps its server.  The run
directory is described in ``records.py`` and ``docs/hierarchy.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from fedgroups.fl.algorithms import Params, load_params
from fedgroups.fl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.datasets import GroupSource
from fedgroups.fl.federation import NonFiniteLossError
from fedgroups.fl.hierarchy import records as rec
from fedgroups.fl.hierarchy.build import (
    MIX,
    USES_RESIDUALS,
    Plan,
    build_nodes,
    flat_budget,
    key_names,
    load_plan,
)
from fedgroups.fl.hierarchy.config import (
    HierarchyConfig,
    parse_hierarchy,
    resolved_config_dict,
    settings_dict,
)
from fedgroups.fl.hierarchy.node import FedNode, Shared
from fedgroups.fl.metrics import MetricsLog
from fedgroups.fl.model import num_parameters
from fedgroups.fl.model_factory import ModelFactory, make_model
from fedgroups.fl.personalization import evaluate, percentiles, personalize
from fedgroups.fl.plots import plot_losses
from fedgroups.fl.simulation import RunDirError
from fedgroups.fl.tokenizer import EOS, prepare_tokenizer


@dataclass(frozen=True)
class HierarchyResult:
    run_dir: Path
    rows: list[dict[str, Any]]  # metrics.jsonl, every node and round
    evals: list[rec.EvalRecord]
    summary: rec.RunSummary
    root: FedNode
    plots: list[Path]

    def eval_params(self, leaf: str) -> Params:
        return _eval_params(self.root, leaf, self.summary.method)


def run(config: TrainConfig, *, resume: bool = False, echo: Any = print,
        hierarchy: HierarchyConfig | None = None,
        model_factory: ModelFactory | None = None) -> HierarchyResult:
    """Train the tree ``config.hierarchy`` describes; ``resume`` continues the run dir.

    ``hierarchy`` replaces the parsed ``config.hierarchy``; ``model_factory`` the config's
    ``model.factory`` (as in ``fl.simulation.run``; pass it again when resuming).
    """
    hier = hierarchy if hierarchy is not None else parse_hierarchy(config.hierarchy or {})
    if config.run.threads is not None:
        torch.set_num_threads(config.run.threads)
    if config.run.deterministic:
        torch.use_deterministic_algorithms(True)
    device = torch.device(config.run.device)
    run_dir = Path(config.output_dir)
    log = MetricsLog(run_dir)
    ckpt_path = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt_path is None:
        raise RunDirError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    if not resume and (log.jsonl.exists() or latest_checkpoint(run_dir) is not None):
        raise RunDirError(f"output_dir {run_dir} already holds a run; use --resume {run_dir} "
                          "to continue it or choose another output_dir")

    plan = load_plan(config, hier)
    primary = plan.sources[config.data.path]
    train_keys = tuple(k for lf in plan.leaves for ds, k in lf.train if ds is primary.dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = prepare_tokenizer(
        config.tokenizer, GroupSource(dataset=primary.dataset, keys=train_keys or primary.keys,
                                      name="data"),
        config.data.text_column, run_dir, config.seed)
    eos_id = tokenizer.token_to_id(EOS)
    _write_yaml(run_dir / "config.yaml", resolved_config_dict(config, hier))

    vocab = tokenizer.get_vocab_size()
    model, args = make_model(config.model, vocab, config.seed, model_factory)
    model = model.to(device)
    eval_model, scratch = (make_model(config.model, vocab, config.seed, model_factory)[0]
                           .to(device) for _ in range(2))
    names = [n for n, _ in model.named_parameters()]
    keys = key_names(names, hier)
    attention_buffer: list[rec.AttentionRecord] = []
    shared = Shared(model=model, tokenizer=tokenizer, eos_id=eos_id, config=config,
                    backbone=[n for n in names if n not in keys], key_names=keys,
                    method=hier.method, mode=MIX.get(hier.method, "none"),
                    residuals=hier.residuals if hier.method in USES_RESIDUALS else 0,
                    device=device, on_attention=attention_buffer.append)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    root, used_settings = build_nodes(plan, config, hier, shared, init)
    inner = flat_budget(plan)[0] if hier.method == "fl" else 1
    nodes = {n.path: n for n in root.walk()}
    _write_tree(run_dir, plan, root, used_settings, hier)

    start = 0
    totals = {"client_updates": 0.0, "seconds": 0.0}
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path)
        for path, node_state in state["hierarchy"]["nodes"].items():
            nodes[path].load_state_dict(node_state)
        totals = {k: float(v) for k, v in state["hierarchy"]["totals"].items()}
        start = int(state["round"])
        log.truncate(start)
        for name in (rec.EVAL_FILE, rec.ATTENTION_FILE):
            rec.truncate_jsonl(run_dir / name, start)
    echo(f"model: {num_parameters(model):,} parameters ({len(keys)} key-layer tensors); "
         f"method {hier.method}; {len(nodes)} node(s), {len(plan.leaves)} leaf federation(s); "
         f"run dir: {run_dir}")

    held_out = {lf.node.path: _pack(lf.held_out, tokenizer, eos_id, config)
                for lf in plan.leaves}
    evals = rec.read_eval(run_dir) if ckpt_path is not None else []
    summary = None
    for r in _progress(range(start, config.rounds), config.run.progress):
        shared.root_round = r
        t0 = time.perf_counter()
        try:
            for _ in range(inner):
                root.run_round()
        except NonFiniteLossError as e:
            last = latest_checkpoint(run_dir)
            raise NonFiniteLossError(f"{e}; stopping. Last good checkpoint: {last}. Lower "
                                     "client.lr / server lr, then --resume.") from None
        seconds = time.perf_counter() - t0
        rows = [_node_row(n, r, hier.method, seconds if n is root else None)
                for n in nodes.values()]
        rows = [row for row in rows if row is not None]
        totals["client_updates"] += rows[0].clients
        totals["seconds"] += seconds
        rec.append_jsonl(log.jsonl, rows)
        rec.append_jsonl(run_dir / rec.ATTENTION_FILE, attention_buffer)
        attention_buffer.clear()
        last = r + 1 == config.rounds
        if last or (config.eval.every and (r + 1) % config.eval.every == 0):
            new = _evaluate(plan, root, hier.method, eval_model, scratch, held_out, config, r)
            rec.append_jsonl(run_dir / rec.EVAL_FILE, new)
            evals.extend(new)
            echo(f"round {r + 1}: eval loss {new[-1].loss:.4f}, ppl {new[-1].ppl:.2f} "
                 f"(mean over {len(new) - 1} leaf federations)")
        summary = _summary(hier.method, r + 1, root, totals, evals, nodes, model, keys)
        rec.write_json(run_dir / rec.SUMMARY_FILE, rec.to_json(summary))
        if last or (r + 1) % config.run.checkpoint_every == 0:
            state = {"round": r + 1, "model_args": args,
                     "config": resolved_config_dict(config, hier),
                     "hierarchy": {"nodes": {p: n.state_dict() for p, n in nodes.items()},
                                   "totals": totals}}
            save_checkpoint(run_dir, state, config.run.keep_checkpoints)
            log.write_csv()
    log.write_csv()
    rows_all = log.read()
    (run_dir / "plots").mkdir(exist_ok=True)
    root_rows = [dict(r, **_eval_columns(evals, r["round"])) for r in rows_all
                 if r["node"] == root.path]
    plots = [plot_losses(root_rows, run_dir / "plots" / "loss.png")]
    if summary is None:
        summary = rec.read_summary(run_dir)
    return HierarchyResult(run_dir=run_dir, rows=rows_all, evals=evals, summary=summary,
                           root=root, plots=plots)


def _node_row(node: FedNode, r: int, method: str, seconds: float | None
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


def _eval_params(root: FedNode, leaf: str, method: str) -> Params:
    """A leaf federation's model: the root's backbone plus the leaf's own key layers."""
    if method == "fl":
        return dict(root.server.snapshot())
    backbone = root.server.snapshot() if root.server is not None else {}
    node = next(n for n in root.walk() if n.path == leaf)
    return {**backbone, **node.own_keys()}


def _pack(clients: Any, tokenizer: Any, eos_id: int, config: TrainConfig) -> list[ClientData]:
    out = []
    for ds, key in clients:
        data = pack_client(ds.group(key), tokenizer, text_column=config.data.text_column,
                           seq_len=config.model.seq_len,
                           max_sequences=config.eval.max_sequences, eos_id=eos_id)
        if data.num_sequences > 0:
            out.append(data)
    return out


def _evaluate(plan: Plan, root: FedNode, method: str, eval_model: torch.nn.Module,
              scratch: torch.nn.Module, held_out: dict[str, list[ClientData]],
              config: TrainConfig, r: int) -> list[rec.EvalRecord]:
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
        load_params(eval_model, _eval_params(root, path, method))
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
            method=method, round=r, federation=path, level=lf.node.level, loss=res.loss,
            ppl=_ppl(res.loss), tokens=sum(c.num_tokens for c in clients),
            clients=len(clients), dp_epsilon=node.dp_epsilon() if node else None, **extra))
    scored = [e for e in out if e.tokens > 0 and math.isfinite(e.loss)]
    tokens = sum(e.tokens for e in scored)
    mean = math.fsum(e.loss * e.tokens for e in scored) / tokens if tokens else math.nan
    out.append(rec.EvalRecord(method=method, round=r, federation=rec.MEAN_FEDERATION,
                              level=-1, loss=mean, ppl=_ppl(mean), tokens=tokens,
                              clients=sum(e.clients for e in scored),
                              **(_pers_columns(pre_all, post_all) if do_pers else {})))
    return out


def _pers_columns(pre: list[float], post: list[float]) -> dict[str, float]:
    """pers_pre_p10 ... pers_post_p90: percentiles over held-out clients, as the flat trainer."""
    both = {**percentiles(pre, "pers/pre"), **percentiles(post, "pers/post")}
    return {k.replace("/", "_"): v for k, v in both.items()}


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 50 else math.inf


def _eval_columns(evals: list[rec.EvalRecord], r: int) -> dict[str, float]:
    means = [e.loss for e in evals if e.round == r and e.federation == rec.MEAN_FEDERATION]
    return {"eval/mean/loss": means[-1]} if means else {}


def _summary(method: str, rounds: int, root: FedNode, totals: dict[str, float],
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


def _write_tree(run_dir: Path, plan: Plan, root: FedNode, settings: dict[str, Any],
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


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)


def _progress(rounds: range, enabled: bool) -> Any:
    if not enabled:
        return rounds
    from tqdm import tqdm

    return tqdm(rounds, desc="root rounds", unit="round", initial=rounds.start,
                total=rounds.stop, dynamic_ncols=True)


def run_cli(config: TrainConfig, *, backend: str = "sequential", resume: bool = False) -> int:
    """``fedgroups train`` for a config with a ``hierarchy:`` section; returns the exit code."""
    import sys

    from fedgroups.errors import FedGroupsError

    if backend != "sequential":
        print("fedgroups train: error: a hierarchical run uses --backend sequential",
              file=sys.stderr)
        return 2
    try:
        result = run(config, resume=resume, echo=lambda m: print(m, file=sys.stderr))
    except NonFiniteLossError as e:
        print(f"fedgroups train: {e}", file=sys.stderr)
        return 1
    except (FedGroupsError, FileNotFoundError) as e:
        print(f"fedgroups train: error: {e}", file=sys.stderr)
        return 2
    print(summary_table(result.summary))
    print(f"metrics: {result.run_dir / 'metrics.csv'}  eval: {result.run_dir / rec.EVAL_FILE}")
    for p in result.plots:
        print(f"plot:    {p}")
    return 0


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
