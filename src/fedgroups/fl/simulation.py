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

from fedgroups.fl import datasets
from fedgroups.fl.backends import BackendName, make_backend
from fedgroups.fl.checkpoint import (
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from fedgroups.fl.client_data import ClientData, pack_client
from fedgroups.fl.config import EvalDatasetConfig, TrainConfig, to_dict
from fedgroups.fl.errors import CheckpointError, NonFiniteLossError
from fedgroups.fl.federation import Federation
from fedgroups.fl.loggers import make_loggers
from fedgroups.fl.metrics import MetricsLog
from fedgroups.fl.model import num_parameters
from fedgroups.fl.model_factory import ModelFactory, make_model
from fedgroups.fl.model_factory import model_args as model_args  # re-exported
from fedgroups.fl.personalization import evaluate, personalize
from fedgroups.fl.plots import plot_losses, plot_personalization
from fedgroups.fl.report import eval_lines, train_loss_label
from fedgroups.fl.report import summary_table as summary_table  # re-exported
from fedgroups.fl.strategy import Strategy
from fedgroups.fl.tokenizer import load_tokenizer, prepare_tokenizer, run_eos_id


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    rows: list[dict[str, Any]]  # metrics of every round, resumed ones included
    model: torch.nn.Module  # the final global model
    plots: list[Path]


def run(config: TrainConfig, *, backend: BackendName = "sequential", resume: bool = False,
        echo: Any = print, strategy: Strategy | None = None,
        model_factory: ModelFactory | None = None,
        allow_dataset_change: bool = False) -> RunResult:
    """Train per ``config``; with ``resume``, continue from the run's latest checkpoint.

    ``strategy`` replaces the one the config's ``algorithm`` / ``strategy`` sections
    describe, ``model_factory`` the config's ``model.factory`` (pass the same ones again
    when resuming).  A resume on a dataset whose group index differs from the checkpoint's
    is refused unless ``allow_dataset_change``.
    """
    run_cfg = config.run
    if run_cfg.threads is not None:
        torch.set_num_threads(run_cfg.threads)
    if run_cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    device = torch.device(run_cfg.device)
    be = make_backend(backend)
    main = be.rank == 0
    run_dir = Path(config.output_dir)
    log = MetricsLog(run_dir)
    ckpt_path = resume_point(run_dir, resume, log.jsonl.exists())

    train_src = datasets.open_source(config.data, "data")
    eval_srcs = [datasets.open_source(d, f"eval.datasets.{i}")
                 for i, d in enumerate(config.eval.datasets)]
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer = prepare_tokenizer(config.tokenizer, train_src, config.data.text_column,
                                      run_dir, config.seed)
        _write_config(config, run_dir / "config.yaml")
    be.barrier()
    if not main:
        tokenizer = load_tokenizer(run_dir)
    eos_id = run_eos_id(run_dir, tokenizer)

    vocab = tokenizer.get_vocab_size()
    model, args = make_model(config.model, vocab, config.seed, model_factory)
    model = model.to(device)
    eval_model = make_model(config.model, vocab, config.seed, model_factory)[0].to(device)
    fed = Federation(model=model, source=train_src, tokenizer=tokenizer, eos_id=eos_id,
                     config=config, backend=be, device=device, strategy=strategy)
    start_round = 0
    dataset_id = {"path": config.data.path, "index_sha256": train_src.index_sha256}
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path)
        _check_dataset(state.get("dataset"), dataset_id, ckpt_path, allow_dataset_change)
        fed.load_state_dict(state)
        start_round = state["round"]
        if main:
            log.truncate(start_round)
            _truncate_jsonl(run_dir / "personalization.jsonl", start_round)
    if main:
        echo(f"model: {num_parameters(model):,} parameters {args}; run dir: {run_dir}")
        for note in config.notes(len(train_src.keys)):
            echo(f"note: {note}")

    eval_clients = ([_eval_clients(s, spec, tokenizer, eos_id, config)
                     for s, spec in zip(eval_srcs, config.eval.datasets)] if main else [])
    progress = _progress(range(start_round, config.rounds), enabled=main and run_cfg.progress)
    say = progress.write if hasattr(progress, "write") else echo  # above the progress bar
    loggers = make_loggers(run_cfg.loggers, run_dir, to_dict(config), resume) if main else []
    try:
        _train(fed, config, be, progress, log, loggers, say, ckpt_path, args,
               eval_model, model, eval_clients, eval_srcs, dataset_id)
    finally:
        for lg in loggers:
            lg.close()
    fed.load_global(eval_model)
    plots: list[Path] = []
    rows = log.read() if main else []
    if main:
        log.write_csv()
        (run_dir / "plots").mkdir(exist_ok=True)
        title = f"{run_dir.name}: {config.algorithm.name}, {config.rounds} rounds"
        plots.append(plot_losses(rows, run_dir / "plots" / "loss.png", title=title,
                                 train_label=train_loss_label(config.algorithm.name)))
        pers = plot_personalization(run_dir / "personalization.jsonl",
                                    run_dir / "plots" / "personalization.png")
        if pers is not None:
            plots.append(pers)
    be.barrier()
    return RunResult(run_dir=run_dir, rows=rows, model=eval_model, plots=plots)


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
                    f.write(json.dumps({"round": round_, "dataset": spec.name, "key": str(key),
                                        "pre": pre, "post": post}) + "\n")
    return out


def _truncate_jsonl(path: Path, before_round: int) -> None:
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines()
             if ln.strip() and json.loads(ln)["round"] < before_round]
    path.write_text("".join(ln + "\n" for ln in lines))


def _write_config(config: TrainConfig, path: Path) -> None:
    import yaml

    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    tmp.replace(path)


def _progress(rounds: range, enabled: bool) -> Any:
    if not enabled:
        return rounds
    from tqdm import tqdm

    return tqdm(rounds, desc="rounds", unit="round", initial=rounds.start,
                total=rounds.stop, dynamic_ncols=True)


def _train(fed: Federation, config: TrainConfig, be: Any, progress: Any, log: MetricsLog,
           loggers: list[Any], say: Any, last_good: Path | None, args: dict[str, Any],
           eval_model: torch.nn.Module, model: torch.nn.Module,
           eval_clients: list[list[ClientData]], eval_srcs: list[datasets.GroupSource],
           dataset_id: dict[str, Any]) -> None:
    """The rounds of ``progress``: train, evaluate, log, checkpoint."""
    main, run_cfg, run_dir = be.rank == 0, config.run, log.jsonl.parent
    for r in progress:
        t0 = time.perf_counter()
        try:
            row: dict[str, Any] = {"round": r, **fed.run_round(r)}
        except NonFiniteLossError as e:
            kept = f"last good checkpoint: {last_good}" if last_good else "no checkpoint was saved"
            raise NonFiniteLossError(
                f"{e}; stopping. {kept}. Lower client.lr / server.lr or set "
                "client.grad_clip_norm, then resume from the checkpoint."
            ) from None
        seconds = time.perf_counter() - t0
        row["seconds"] = seconds
        row["tokens_per_s"] = row["tokens"] / seconds if seconds > 0 else 0.0
        last = r + 1 == config.rounds
        if main and (last or (config.eval.every and (r + 1) % config.eval.every == 0)):
            row.update(_evaluate(fed, eval_model, model, eval_clients, config, r, run_dir,
                                 eval_srcs))
            for line in eval_lines(row):
                say(line)
        if main:
            log.append(row)
            for lg in loggers:
                lg.log(row)
            if hasattr(progress, "set_postfix"):
                progress.set_postfix(loss=f"{row['train_loss']:.3f}",
                                     tok_s=f"{row['tokens_per_s']:.0f}")
        if last or (r + 1) % run_cfg.checkpoint_every == 0:
            if main:
                state = {"round": r + 1, "model_args": args, "config": to_dict(config),
                         "dataset": dataset_id, **fed.state_dict()}
                last_good = save_checkpoint(run_dir, state, run_cfg.keep_checkpoints)
                log.write_csv()
            be.barrier()


def _check_dataset(saved: dict[str, Any] | None, now: dict[str, Any], ckpt: Path,
                   allow_change: bool) -> None:
    """Refuse to resume on other data than the checkpoint's, unless allowed."""
    if allow_change or saved is None or saved.get("index_sha256") is None \
            or now["index_sha256"] is None or saved["index_sha256"] == now["index_sha256"]:
        return
    raise CheckpointError(
        f"--resume: checkpoint {ckpt} was trained on dataset {saved['path']!r} (group index "
        f"sha256 {saved['index_sha256'][:12]}...), but data.path {now['path']!r} now holds "
        f"another dataset (index {now['index_sha256'][:12]}...); resume on the original data, "
        "or pass --allow-dataset-change to continue on this one"
    )
