"""The simulation loop: set up a run, train round by round, evaluate, checkpoint, plot.

Run directory layout::

    config.yaml            resolved config (every setting, defaults included)
    tokenizer.json         the run's tokenizer (with tokenizer_config.json: its eos_token)
    metrics.jsonl / .csv   one row per round (eval and personalization columns when run)
    personalization.jsonl  per eval client: pre and post loss, per personalized round
    checkpoints/round_NNNNNN.pt
    plots/loss.png, plots/personalization.png
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedgroups.fl import datasets, driver
from fedgroups.fl.backends import BackendName
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.config import EvalDatasetConfig, TrainConfig, to_dict
from fedgroups.fl.errors import NonFiniteLossError
from fedgroups.fl.federation import Federation
from fedgroups.fl.metrics import MetricsLog
from fedgroups.fl.model import num_parameters
from fedgroups.fl.model_factory import ModelFactory, make_model
from fedgroups.fl.model_factory import model_args as model_args  # re-exported
from fedgroups.fl.personalization import evaluate, personalize
from fedgroups.fl.plots import plot_losses, plot_personalization
from fedgroups.fl.report import eval_lines, train_loss_label
from fedgroups.fl.report import summary_table as summary_table  # re-exported
from fedgroups.fl.strategy import Strategy


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    rows: list[dict[str, Any]]  # metrics of every round, resumed ones included
    model: torch.nn.Module  # the final global model
    plots: list[Path]


def run(config: TrainConfig, *, backend: BackendName = "sequential", resume: bool = False,
        echo: Any = print, strategy: Strategy | None = None,
        model_factory: ModelFactory | None = None,
        allow_dataset_change: bool = False, overwrite: bool = False) -> RunResult:
    """Train per ``config``; with ``resume``, continue from the run's latest checkpoint.

    ``strategy`` replaces the one the config's ``algorithm`` / ``strategy`` sections
    describe, ``model_factory`` the config's ``model.factory`` (pass the same ones again
    when resuming).  A resume on a dataset whose group index differs from the checkpoint's
    is refused unless ``allow_dataset_change``; one that changes more than
    ``run_record.SAFE_ON_RESUME`` is refused.  ``overwrite`` replaces an earlier run in
    ``output_dir``, once everything else is checked.
    """
    st = driver.start(config, to_dict(config), strategy=strategy, model_factory=model_factory,
                      backend=backend, resume=resume, overwrite=overwrite)
    record, chosen, device, be, run_path, main = (st.record, st.strategy, st.device,
                                                  st.backend, st.run_path, st.main)
    train_src = datasets.open_source(config.data, "data")
    eval_srcs = [datasets.open_source(d, f"eval.datasets.{i}")
                 for i, d in enumerate(config.eval.datasets)]
    if overwrite and main:
        driver.clear_old_run(run_path)
    be.barrier()
    run_dir = driver.open_run_dir(run_path, resume=resume, record=record)
    dataset_id = {"path": config.data.path, "index_sha256": train_src.index_sha256}
    all_ids = driver.dataset_identity(
        {"data.path": (config.data.path, train_src.index_sha256),
         **{f"eval.datasets.{i}.path": (d.path, s.index_sha256)
            for i, (d, s) in enumerate(zip(config.eval.datasets, eval_srcs))}})
    if run_dir.checkpoint is not None:
        saved = run_dir.state.get("datasets") or (
            {"data.path": run_dir.state["dataset"]} if run_dir.state.get("dataset") else None)
        driver.check_datasets(saved, all_ids, run_dir.checkpoint, allow_dataset_change)
    log = MetricsLog(run_path)
    tokenizer, eos_id = driver.set_up_run_dir(config, st, run_dir, all_ids, train_src,
                                              resume=resume, echo=echo)

    vocab = tokenizer.get_vocab_size()
    model, args = make_model(config.model, vocab, config.seed, model_factory)
    model = model.to(device)
    eval_model = make_model(config.model, vocab, config.seed, model_factory)[0].to(device)
    fed = Federation(model=model, source=train_src, tokenizer=tokenizer, eos_id=eos_id,
                     config=config, backend=be, device=device, strategy=chosen)
    if run_dir.checkpoint is not None:
        fed.load_state_dict(run_dir.state)
    if main:
        echo(f"model: {num_parameters(model):,} parameters {args}; run dir: {run_path}")
        state = driver.client_state_note(
            chosen, len(train_src.keys),
            sum(p.numel() for n, p in model.named_parameters() if n in fed.aggregated))
        for note in [*config.notes(len(train_src.keys)), *([state] if state else [])]:
            echo(f"note: {note}")

    eval_clients = ([_eval_clients(s, spec, tokenizer, eos_id, config)
                     for s, spec in zip(eval_srcs, config.eval.datasets)] if main else [])
    loop = driver.RoundLoop(config, run_dir, main=main, echo=echo, desc="rounds",
                            logger_config=record)
    try:
        _train(fed, config, be, loop, log, args, eval_model, model, eval_clients, eval_srcs,
               {"dataset": dataset_id, "datasets": all_ids})
    finally:
        loop.close()
    fed.load_global(eval_model)
    plots: list[Path] = []
    rows = log.read() if main else []
    if main:
        log.write_csv()
        (run_path / "plots").mkdir(exist_ok=True)
        title = f"{run_path.name}: {config.algorithm.name}, {config.rounds} rounds"
        plots.append(plot_losses(rows, run_path / "plots" / "loss.png", title=title,
                                 train_label=train_loss_label(config.algorithm.name)))
        pers = plot_personalization(run_path / "personalization.jsonl",
                                    run_path / "plots" / "personalization.png")
        if pers is not None:
            plots.append(pers)
    be.barrier()
    return RunResult(run_dir=run_path, rows=rows, model=eval_model, plots=plots)


def eval_keys(keys: tuple[Any, ...], max_clients: int, seed: int) -> list[Any]:
    """``max_clients`` keys drawn uniformly (a pure function of ``seed``), in key order.

    The first keys in sorted order would be a biased sample (names sort by topic, language,
    site); the draw depends on the eval dataset's ``split_seed`` only, so runs with
    different training seeds evaluate the same clients.
    """
    if len(keys) <= max_clients:
        return list(keys)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x65766C]))
    chosen = np.sort(rng.choice(len(keys), size=max_clients, replace=False))
    return [keys[i] for i in chosen.tolist()]


def _eval_clients(source: datasets.GroupSource, spec: EvalDatasetConfig, tokenizer: Any,
                  eos_id: int, config: TrainConfig) -> list[ClientData]:
    """``max_clients`` keys of an eval dataset (:func:`eval_keys`), packed once and reused."""
    out = []
    for key in eval_keys(source.keys, spec.max_clients, spec.split_seed):
        data = pack_client(source.group(key), tokenizer, text_column=spec.text_column,
                           seq_len=config.model.seq_len,
                           max_sequences=config.eval.max_sequences, eos_id=eos_id)
        if data.num_sequences > 0:
            out.append(data)
    return out


def _evaluate(fed: Federation, eval_model: torch.nn.Module, scratch: torch.nn.Module,
              eval_clients: list[list[ClientData]], config: TrainConfig, round_: int,
              run_dir: Path, sources: list[datasets.GroupSource]) -> dict[str, float]:
    fed.load_global(eval_model)
    out: dict[str, float] = {}
    pers = config.personalization
    do_pers = pers.enabled and (round_ + 1 == config.rounds
                                or (pers.every and (round_ + 1) % pers.every == 0))
    for spec, clients, source in zip(config.eval.datasets, eval_clients, sources):
        res = evaluate(eval_model, clients, config.eval.batch_size, fed.device)
        out.update(res.metrics(f"eval/{spec.name}"))
        out[f"eval/{spec.name}/skipped"] = float(min(len(source.keys), spec.max_clients)
                                                  - len(clients))
        if do_pers:
            p = personalize(eval_model, scratch, clients, pers,
                            eval_batch_size=config.eval.batch_size, seed=config.seed,
                            device=fed.device)
            out.update(p.metrics(f"pers/{spec.name}"))
            keys = [c.key for c in clients if c.num_sequences >= 2]
            with (run_dir / "personalization.jsonl").open("a") as f:
                for key, pre, post in zip(keys, p.pre, p.post):
                    f.write(json.dumps({"round": round_ + 1, "dataset": spec.name, "key": str(key),
                                        "pre": pre, "post": post}) + "\n")
    return out


def _train(fed: Federation, config: TrainConfig, be: Any, loop: driver.RoundLoop,
           log: MetricsLog, args: dict[str, Any], eval_model: torch.nn.Module,
           model: torch.nn.Module, eval_clients: list[list[ClientData]],
           eval_srcs: list[datasets.GroupSource], identity: dict[str, Any]) -> None:
    """The rounds of ``loop``: train, evaluate, log, checkpoint."""
    main, run_dir = be.rank == 0, log.jsonl.parent
    for r in loop:
        t0 = time.perf_counter()
        try:
            row: dict[str, Any] = {"round": r + 1, **fed.run_round(r)}
        except NonFiniteLossError as e:
            raise loop.nonfinite(e) from None
        seconds = time.perf_counter() - t0
        row["seconds"] = seconds
        row["tokens_per_s"] = row["tokens"] / seconds if seconds > 0 else 0.0
        if main and loop.eval_due(r):
            row.update(_evaluate(fed, eval_model, model, eval_clients, config, r, run_dir,
                                 eval_srcs))
            for line in eval_lines(row):
                loop.say(line)
        if main:
            log.append(row)
            loop.log(row)
        if loop.checkpoint_due(r):
            if main:
                loop.save({"round": r + 1, "model_args": args, "config": to_dict(config),
                           **identity, **fed.state_dict()})
                log.write_csv()
            be.barrier()
