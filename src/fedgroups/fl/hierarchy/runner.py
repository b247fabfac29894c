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

from fedgroups.fl import driver
from fedgroups.fl.algorithms import Params
from fedgroups.fl.backends import BackendName
from fedgroups.fl.client_pool import ClientPool
from fedgroups.fl.config import TrainConfig
from fedgroups.fl.datasets import GroupSource
from fedgroups.fl.errors import NonFiniteLossError
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
    ALL_CHILDREN,
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
from fedgroups.fl.strategy import Strategy


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
        hierarchy: HierarchyConfig | None = None, model_factory: ModelFactory | None = None,
        strategy: Strategy | None = None, backend: BackendName = "sequential",
        allow_dataset_change: bool = False, overwrite: bool = False) -> HierarchyResult:
    """Train the tree ``config.hierarchy`` describes; ``resume`` continues the run dir.

    ``hierarchy`` replaces the parsed ``config.hierarchy``; ``model_factory`` the config's
    ``model.factory``, ``strategy`` the config's ``algorithm`` / ``strategy`` sections at
    every node (as in ``fl.simulation.run``; pass them again when resuming).  A resume on
    other data than the checkpoint's (any dataset the tree reads) is refused unless
    ``allow_dataset_change``; ``overwrite`` replaces an earlier run once all is checked.
    """
    hier = hierarchy if hierarchy is not None else parse_hierarchy(config.hierarchy or {})
    st = driver.start(config, resolved_config_dict(config, hier), strategy=strategy,
                      model_factory=model_factory, backend=backend, resume=resume,
                      overwrite=overwrite)
    record, device, be, run_path, main = st.record, st.device, st.backend, st.run_path, st.main
    plan = load_plan(config, hier)
    if overwrite and main:
        driver.clear_old_run(run_path)
    be.barrier()
    run_dir = driver.open_run_dir(run_path, resume=resume, record=record)
    identity = driver.dataset_identity({f"dataset {p}": (p, src.index_sha256)
                                        for p, src in plan.sources.items()})
    if run_dir.checkpoint is not None:
        driver.check_datasets(run_dir.state.get("datasets"), identity, run_dir.checkpoint,
                              allow_dataset_change)
    primary = plan.sources[config.data.path]
    train_keys = tuple(k for lf in plan.leaves for ds, k in lf.train if ds is primary.dataset)
    log = MetricsLog(run_path)
    source = GroupSource(dataset=primary.dataset, keys=train_keys or primary.keys, name="data")
    tokenizer, eos_id = driver.set_up_run_dir(config, st, run_dir, identity, source,
                                              resume=resume, echo=echo)

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
                          if config.run.client_threads > 1 else None),
                    backend=be)  # leaf cohorts spread over ranks; only rank 0 writes
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    root, used_settings = build_nodes(plan, config, hier, shared, init, strategy=strategy)
    inner = flat_budget(plan)[0] if hier.method == "fl" else 1
    nodes = {n.path: n for n in root.walk()}
    if main:
        write_tree(run_path, plan, root, used_settings, hier)

    totals = {"client_updates": 0.0, "seconds": 0.0}
    if run_dir.checkpoint is not None:
        state = run_dir.state
        for path, node_state in state["hierarchy"]["nodes"].items():
            nodes[path].load_state_dict(node_state)
        totals = {k: float(v) for k, v in state["hierarchy"]["totals"].items()}
    if main:
        echo(f"model: {num_parameters(model):,} parameters ({len(keys)} key-layer tensors); "
             f"method {hier.method}; {len(nodes)} node(s), {len(plan.leaves)} leaf "
             f"federation(s); run dir: {run_path}")
        leaf_clients = sum(len(lf.train) for lf in plan.leaves)
        state = driver.client_state_note(st.strategy, leaf_clients,
                                         sum(p.numel() for p in model.parameters()))
        for note in [*cohort_notes(root), *([state] if state else [])]:
            echo(f"note: {note}")

    held_out = {lf.node.path: pack_held_out(lf.held_out, tokenizer, eos_id, config)
                for lf in plan.leaves}
    evals = rec.read_eval(run_path) if run_dir.checkpoint is not None else []
    summary = None
    loop = driver.RoundLoop(config, run_dir, main=main, echo=echo, desc="root rounds",
                            logger_config=record)
    try:
        for r in loop:
            shared.root_round = r + 1  # attention records name the rounds done, as rows do
            t0 = time.perf_counter()
            try:
                for _ in range(inner):
                    root.run_round()
            except NonFiniteLossError as e:
                raise loop.nonfinite(e) from None
            seconds = time.perf_counter() - t0
            rows = [node_row(n, r + 1, hier.method, seconds if n is root else None)
                    for n in nodes.values()]
            rows = [row for row in rows if row is not None]
            totals["client_updates"] += rows[0].clients
            totals["seconds"] += seconds
            new: list[rec.EvalRecord] = []
            if main and loop.eval_due(r):  # rank 0 evaluates, as in a flat run
                new = evaluate_leaves(plan, root, hier.method, eval_model, scratch, held_out,
                                      config, r)
                evals.extend(new)
            summary = run_summary(hier.method, r + 1, root, totals, evals, nodes, model, keys)
            if main:
                rec.append_jsonl(log.jsonl, rows)
                rec.append_jsonl(run_path / rec.ATTENTION_FILE, attention_buffer)
                if new:
                    rec.append_jsonl(run_path / rec.EVAL_FILE, new)
                    loop.say(f"round {r + 1}: eval loss {new[-1].loss:.4f}, ppl "
                             f"{new[-1].ppl:.2f} (mean over {len(new) - 1} leaf federations)")
                loop.log({**rec.to_json(rows[0]), **eval_columns(evals, r + 1)})
                rec.write_json(run_path / rec.SUMMARY_FILE, rec.to_json(summary))
            attention_buffer.clear()
            if loop.checkpoint_due(r):
                if main:
                    loop.save({"round": r + 1, "model_args": args, "config": record,
                               "datasets": identity,
                               "hierarchy": {"nodes": {p: n.state_dict()
                                                       for p, n in nodes.items()},
                                             "totals": totals}})
                    log.write_csv()
                be.barrier()
    finally:
        loop.close()
    plots: list[Path] = []
    rows_all: list[dict[str, Any]] = []
    if main:
        log.write_csv()
        rows_all = log.read()
        (run_path / "plots").mkdir(exist_ok=True)
        root_rows = [dict(r, **eval_columns(evals, r["round"])) for r in rows_all
                     if r["node"] == root.path]
        title = f"{run_path.name}: {hier.method}, {config.rounds} root rounds"
        plots.append(plot_losses(root_rows, run_path / "plots" / "loss.png", title=title))
        if summary is None:
            summary = rec.read_summary(run_path)
    be.barrier()
    if summary is None:  # another rank, nothing left to run
        summary = run_summary(hier.method, config.rounds, root, totals, evals, nodes, model,
                              keys)
    return HierarchyResult(run_dir=run_path, rows=rows_all, evals=evals, summary=summary,
                           root=root, plots=plots)


def cohort_notes(root: FedNode) -> list[str]:
    """A node whose cohort_size exceeds its children: valid, but it takes all of them."""
    out = []
    for n in root.walk():
        children = len(n.clients) if n.is_leaf else len(n.children)
        size = n.settings.cohort_size
        if size < ALL_CHILDREN and size > children:
            kind = "clients" if n.is_leaf else "sub-federations"
            out.append(f"node {n.path!r}: cohort_size {size} > its {children} {kind}: every "
                       f"round uses all {children} (metrics column 'clients')")
    return out


def run_cli(config: TrainConfig, *, backend: BackendName = "sequential", resume: bool = False,
            allow_dataset_change: bool = False, overwrite: bool = False) -> int:
    """``fedgroups train`` for a config with a ``hierarchy:`` section; returns the exit code."""
    import sys

    def train() -> HierarchyResult:
        return run(config, resume=resume, backend=backend, overwrite=overwrite,
                   allow_dataset_change=allow_dataset_change,
                   echo=lambda m: print(m, file=sys.stderr))

    def report(result: HierarchyResult) -> None:
        if not result.rows:  # not rank 0
            return
        print(summary_table(result.summary))
        print(f"metrics: {result.run_dir / 'metrics.csv'}  eval: "
              f"{result.run_dir / rec.EVAL_FILE}")
        for p in result.plots:
            print(f"plot:    {p}")

    return driver.exit_code(train, report, Path(config.output_dir))
