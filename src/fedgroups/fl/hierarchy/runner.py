"""The hierarchical run: set up, train root round by root round, evaluate, checkpoint.

Order of work in a root round: the root samples its cohort of children; each child, in
cohort order, receives the root's backbone and runs all of its own rounds (recursively,
depth first) before the next child starts, so every child of a round starts from the same
weights (synchronous FedAvg at every level); then the root steps its server.  The run
directory is described in ``records.py`` and ``docs/hierarchy.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from fedgroups.fl.algorithms import Params
from fedgroups.fl.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from fedgroups.fl.client_pool import ClientPool
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.datasets import GroupSource
from fedgroups.fl.federation import NonFiniteLossError
from fedgroups.fl.hierarchy import records as rec
from fedgroups.fl.hierarchy.build import (
    MIX,
    USES_RESIDUALS,
    build_nodes,
    flat_budget,
    key_names,
    load_plan,
)
from fedgroups.fl.hierarchy.config import (
    HierarchyConfig,
    parse_hierarchy,
    resolved_config_dict,
)
from fedgroups.fl.hierarchy.evaluation import eval_params, evaluate_leaves, pack_held_out
from fedgroups.fl.hierarchy.node import FedNode, Shared
from fedgroups.fl.hierarchy.report import (
    eval_columns,
    node_row,
    run_summary,
    summary_table,
    write_tree,
)
from fedgroups.fl.metrics import MetricsLog
from fedgroups.fl.model import num_parameters
from fedgroups.fl.model_factory import ModelFactory, make_model
from fedgroups.fl.plots import plot_losses
from fedgroups.fl.tokenizer import prepare_tokenizer, run_eos_id


@dataclass(frozen=True)
class HierarchyResult:
    run_dir: Path
    rows: list[dict[str, Any]]  # metrics.jsonl, every node and round
    evals: list[rec.EvalRecord]
    summary: rec.RunSummary
    root: FedNode
    plots: list[Path]

    def eval_params(self, leaf: str) -> Params:
        return eval_params(self.root, leaf, self.summary.method)


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
    ckpt_path = resume_point(run_dir, resume, log.jsonl.exists())

    plan = load_plan(config, hier)
    primary = plan.sources[config.data.path]
    train_keys = tuple(k for lf in plan.leaves for ds, k in lf.train if ds is primary.dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = prepare_tokenizer(
        config.tokenizer, GroupSource(dataset=primary.dataset, keys=train_keys or primary.keys,
                                      name="data"),
        config.data.text_column, run_dir, config.seed)
    eos_id = run_eos_id(run_dir, tokenizer)  # tokenizer.eos_token, as the flat trainer
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
                    device=device, on_attention=attention_buffer.append,
                    pool=(ClientPool(model, config.run.client_threads)
                          if config.run.client_threads > 1 else None))
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    root, used_settings = build_nodes(plan, config, hier, shared, init)
    inner = flat_budget(plan)[0] if hier.method == "fl" else 1
    nodes = {n.path: n for n in root.walk()}
    write_tree(run_dir, plan, root, used_settings, hier)

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

    held_out = {lf.node.path: pack_held_out(lf.held_out, tokenizer, eos_id, config)
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
        rows = [node_row(n, r, hier.method, seconds if n is root else None)
                for n in nodes.values()]
        rows = [row for row in rows if row is not None]
        totals["client_updates"] += rows[0].clients
        totals["seconds"] += seconds
        rec.append_jsonl(log.jsonl, rows)
        rec.append_jsonl(run_dir / rec.ATTENTION_FILE, attention_buffer)
        attention_buffer.clear()
        last = r + 1 == config.rounds
        if last or (config.eval.every and (r + 1) % config.eval.every == 0):
            new = evaluate_leaves(plan, root, hier.method, eval_model, scratch, held_out, config, r)
            rec.append_jsonl(run_dir / rec.EVAL_FILE, new)
            evals.extend(new)
            echo(f"round {r + 1}: eval loss {new[-1].loss:.4f}, ppl {new[-1].ppl:.2f} "
                 f"(mean over {len(new) - 1} leaf federations)")
        summary = run_summary(hier.method, r + 1, root, totals, evals, nodes, model, keys)
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
    root_rows = [dict(r, **eval_columns(evals, r["round"])) for r in rows_all
                 if r["node"] == root.path]
    plots = [plot_losses(root_rows, run_dir / "plots" / "loss.png")]
    if summary is None:
        summary = rec.readrun_summary(run_dir)
    return HierarchyResult(run_dir=run_dir, rows=rows_all, evals=evals, summary=summary,
                           root=root, plots=plots)


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

