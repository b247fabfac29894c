"""What every training run does around its rounds, flat (``simulation.py``) or tree
(``hierarchy/runner.py``): one copy, so the two cannot drift.

In order of a run: the light checks that need no torch (config, optional dependencies, the
run folder, resume compatibility: :func:`check_before_start`), the plug-in checks
(:func:`resolve_strategy`), settings (:func:`apply_run_settings`), the run folder
(:func:`open_run_dir`: resume point, recorded config, checkpoint, dataset identity, only
then the first write), the tokenizer, the round loop's shared parts (:class:`RoundLoop`:
progress bar, loggers, checkpoint and eval cadence, non-finite loss) and the command's exit
codes (:func:`exit_code`).

Rounds are counted as people read them: the ``round`` of every record and line is the
number of rounds completed (1 after the first round), as checkpoints ``round_NNNNNN``.
Internal seeding keeps its 0-based index.  Module import stays light (no torch).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedgroups.fl.errors import CheckpointError, ConfigError, NonFiniteLossError, RunDirError
from fedgroups.fl.metrics import rewind_records
from fedgroups.fl.run_record import (
    check_resume_config,
    config_record,
    light_config_dict,
    read_recorded_config,
    record_algorithm,
    write_yaml,
)

RUN_MARKERS = ("config.yaml", "metrics.jsonl", "checkpoints")


# --- checks before anything is written -------------------------------------------------


def check_output_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """The run folder can be used as asked (it is not a file; --resume names a folder)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output_dir {run_dir} is a file, not a directory; choose another "
                          "output_dir")
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    if resume and not run_dir.exists():
        raise RunDirError(f"--resume {run_dir}: the folder does not exist")
    if overwrite and not resume and run_dir.exists() and any(run_dir.iterdir()) \
            and not any((run_dir / m).exists() for m in RUN_MARKERS):
        raise RunDirError(f"--overwrite: {run_dir} is not a run directory; remove it yourself "
                          "if that is intended")


def _available(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _uses_privacy(hierarchy: Mapping[str, Any] | None) -> bool:
    if not hierarchy:
        return False
    layers = [*(hierarchy.get("level_settings") or ()), *(hierarchy.get("nodes") or ()),
              *(hierarchy.get("node_settings") or {}).values()]
    return any(isinstance(s, Mapping) and s.get("privacy") is not None for s in layers)


def needed_extras(config: Any) -> list[tuple[str, str, str]]:
    """(module, what needs it, the install command) of each optional dependency ``config`` uses."""
    out = []
    if _uses_privacy(config.hierarchy):
        out.append(("dp_accounting", "hierarchy privacy (its epsilon accountant)",
                    "pip install 'fedgroups[privacy]'"))
    if "tensorboard" in config.run.loggers:
        out.append(("tensorboard", "run.loggers: tensorboard", "pip install 'fedgroups[loggers]'"))
    if "wandb" in config.run.loggers:
        out.append(("wandb", "run.loggers: wandb", "pip install wandb"))
    factory = config.model.factory
    if isinstance(factory, str) and factory.split(".")[0].split(":")[0] == "transformers":
        out.append(("transformers", f"model.factory {factory}",
                    "pip install 'fedgroups[hf-models]'"))
    tok = config.tokenizer.path
    if tok is not None and Path(tok).is_dir() and not (Path(tok) / "tokenizer.json").is_file():
        out.append(("transformers", f"tokenizer.path {tok} (a folder without tokenizer.json)",
                    "pip install 'fedgroups[hf-models]'"))
    return out


def check_optional_dependencies(config: Any) -> None:
    """One line naming the extra to install, before any work (not after a round)."""
    for module, what, install in needed_extras(config):
        if not _available(module):
            raise ConfigError(f"{what} needs the {module.replace('_', '-')} package, which is "
                              f"not installed: {install}")


def check_before_start(config: Any, *, resume: bool, overwrite: bool = False,
                       record: Mapping[str, Any] | None = None) -> None:
    """Every check that needs no torch: run folder, hierarchy section, optional packages,
    and on a resume the recorded config against ``record`` (default: ``config``'s)."""
    run_dir = Path(config.output_dir)
    check_output_dir(run_dir, resume=resume, overwrite=overwrite)
    if record is None:
        record = config_record(light_config_dict(config))
    check_optional_dependencies(config)
    saved = read_recorded_config(run_dir) if resume else None
    if saved is not None:  # the algorithm's name and settings are checked once resolved
        check_resume_config(run_dir, saved, record, resolved=False)


def resolve_strategy(config: Any, strategy: Any, model_factory: Any,
                     backend: str = "sequential") -> Any:
    """The run's strategy (the one given, else the config's, which checks its plug-ins),
    after checking that ``model.factory`` imports; then what can be checked of it before a
    run starts (its selection on a dry run, client state across ranks)."""
    from fedgroups.fl.plugins import load_callable
    from fedgroups.fl.strategy import strategy_from_config

    if model_factory is None and config.model.factory is not None:
        load_callable(config.model.factory, "model.factory")
    chosen = strategy_from_config(config) if strategy is None else strategy
    check = getattr(chosen, "check", None)
    if check is not None:
        check(cohort_size=config.cohort_size, seed=config.seed,
              backend_world_size=2 if backend == "distributed" else 1, client=config.client)
    return chosen


@dataclass
class Start:
    """What both runners know once every check has passed and nothing is written yet."""

    record: dict[str, Any]  # what config.yaml will hold (the algorithm resolved)
    strategy: Any  # the run's strategy (given, or the config's)
    device: Any
    backend: Any
    run_path: Path

    @property
    def main(self) -> bool:
        return self.backend.rank == 0


def start(config: Any, record: dict[str, Any], *, strategy: Any, model_factory: Any,
          backend: str, resume: bool, overwrite: bool) -> Start:
    """The checks before a run (folder, optional packages, recorded config, plug-ins,
    selection, client state across ranks), then threads/device and the backend."""
    from fedgroups.fl.backends import make_backend

    record = config_record(record, strategy)
    check_before_start(config, resume=resume, overwrite=overwrite, record=record)
    chosen = resolve_strategy(config, strategy, model_factory, backend)
    record = record_algorithm(record, chosen, injected=strategy is not None)
    device = apply_run_settings(config.run)
    return Start(record=record, strategy=chosen, device=device,
                 backend=make_backend(backend), run_path=Path(config.output_dir))


# --- the recorded config and what a resume may change ---------------------------------


# --- the run folder -------------------------------------------------------------------


@dataclass
class RunDir:
    """The run folder of one run: where it resumes from (``start`` rounds done)."""

    path: Path
    checkpoint: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the loaded checkpoint

    @property
    def start(self) -> int:
        return int(self.state.get("round", 0))


def clear_old_run(run_dir: Path) -> None:
    """``--overwrite``: remove an earlier run (checked to be one by :func:`check_output_dir`)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def open_run_dir(run_dir: Path, *, resume: bool, record: Mapping[str, Any]) -> RunDir:
    """The resume point, after checking the recorded config against ``record``; writes nothing."""
    from fedgroups.fl.checkpoint import load_checkpoint, resume_point

    ckpt = resume_point(run_dir, resume, (run_dir / "metrics.jsonl").exists())
    if ckpt is None:
        return RunDir(path=run_dir)
    saved = read_recorded_config(run_dir)
    if saved is not None:
        check_resume_config(run_dir, saved, record)
    return RunDir(path=run_dir, checkpoint=ckpt, state=load_checkpoint(ckpt))


def dataset_identity(sources: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {path, index_sha256}}`` of every dataset a run reads (saved in checkpoints)."""
    return {name: {"path": path, "index_sha256": digest}
            for name, (path, digest) in sources.items()}


def write_datasets(run_dir: Path, ids: Mapping[str, Any]) -> None:
    """``datasets.json``: the identity of every dataset the run reads (what ``compare``
    uses to tell two datasets at one path apart; checkpoints hold the same)."""
    tmp = run_dir / "datasets.json.tmp"
    tmp.write_text(json.dumps(dict(ids), indent=1, sort_keys=True) + "\n")
    tmp.replace(run_dir / "datasets.json")


def set_up_run_dir(config: Any, st: Start, run_dir: RunDir, identity: Mapping[str, Any],
                   tokenizer_source: Any, *, resume: bool, echo: Callable[[str], None],
                   ) -> tuple[Any, int]:
    """Rank 0 makes the run folder its own: record files cut back to the checkpoint on a
    resume, the tokenizer (trained, loaded, or the run's own on a resume), config.yaml
    and datasets.json; the other ranks then load the tokenizer. (tokenizer, eos id)."""
    from fedgroups.fl.metrics import MetricsLog
    from fedgroups.fl.tokenizer import load_tokenizer, run_eos_id

    if st.main:
        st.run_path.mkdir(parents=True, exist_ok=True)
        if run_dir.checkpoint is not None:
            rewind_records(st.run_path, run_dir.start, echo)
            MetricsLog(st.run_path).write_csv()
        tokenizer = prepare_run_tokenizer(config, tokenizer_source, st.run_path, resume)
        write_yaml(st.run_path / "config.yaml", st.record)
        write_datasets(st.run_path, identity)
    st.backend.barrier()
    if not st.main:
        tokenizer = load_tokenizer(st.run_path)
    return tokenizer, run_eos_id(st.run_path, tokenizer)


def client_state_note(strategy: Any, num_clients: int, state_numel: int) -> str | None:
    """For an algorithm that keeps per-client state: how much memory that can take."""
    algo = getattr(strategy, "algorithm", None)
    if algo is None or not getattr(algo, "client_state", False):
        return None
    per_client = state_numel * 4  # float32
    total = per_client * num_clients
    return (f"algorithm {algo.name!r} keeps a state per client in this process (and in every "
            f"checkpoint): up to {num_clients:,} clients x {per_client / 2**20:.1f} MiB = "
            + (f"{total / 2**30:.1f} GiB" if total >= 2**30 else f"{total / 2**20:.0f} MiB")
            + ", growing with the clients that have taken part")


def check_datasets(saved: Mapping[str, Any] | None, now: Mapping[str, Any], ckpt: Path,
                   allow_change: bool) -> None:
    """Refuse to resume on other data than the checkpoint's, unless allowed."""
    if allow_change or not saved:
        return
    for name, was in saved.items():
        is_ = now.get(name)
        if is_ is None or was.get("index_sha256") is None or is_["index_sha256"] is None \
                or was["index_sha256"] == is_["index_sha256"]:
            continue
        raise CheckpointError(
            f"--resume: checkpoint {ckpt} was trained on dataset {was['path']!r} (group index "
            f"sha256 {was['index_sha256'][:12]}...), but {name} {is_['path']!r} now holds "
            f"another dataset (index {is_['index_sha256'][:12]}...); resume on the original "
            "data, or pass --allow-dataset-change to continue on this one")


def prepare_run_tokenizer(config: Any, source: Any, run_dir: Path, resume: bool) -> Any:
    """The tokenizer in ``run_dir``: kept on a resume (its settings are checked with the
    config), made anew on a fresh start (a failed start may have left one)."""
    from fedgroups.fl.tokenizer import prepare_tokenizer

    return prepare_tokenizer(config.tokenizer, source, config.data.text_column, run_dir,
                             config.seed, reuse=resume)


# --- the round loop -------------------------------------------------------------------


def apply_run_settings(run_cfg: Any) -> Any:
    """Threads, deterministic algorithms; returns the torch device."""
    import torch

    if run_cfg.threads is not None:
        torch.set_num_threads(run_cfg.threads)
    if run_cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    return torch.device(run_cfg.device)


def progress_wanted(run_cfg: Any) -> bool:
    """``run.progress: false`` (or --quiet) draws none; otherwise only on a terminal."""
    from fedgroups.terminal import progress_enabled

    return progress_enabled(None if run_cfg.progress else False)


class RoundLoop:
    """Rounds ``start .. config.rounds - 1`` (0-based ``r``) with what both runners share."""

    def __init__(self, config: Any, run_dir: RunDir, *, main: bool, echo: Callable[[str], None],
                 desc: str, logger_config: Mapping[str, Any]) -> None:
        from fedgroups.fl.loggers import make_loggers

        self.config, self.run_dir, self.main = config, run_dir, main
        rounds = range(run_dir.start, config.rounds)
        self.bar: Any = rounds
        if main and progress_wanted(config.run):
            from tqdm import tqdm

            self.bar = tqdm(rounds, desc=desc, unit="round", initial=rounds.start,
                            total=rounds.stop, dynamic_ncols=True)
        self.say = self.bar.write if hasattr(self.bar, "write") else echo  # above the bar
        self.last_good = run_dir.checkpoint
        resumed = run_dir.checkpoint is not None
        self.loggers = (make_loggers(config.run.loggers, run_dir.path, logger_config, resumed,
                                     purge_step=run_dir.start + 1 if resumed else None)
                        if main else [])

    def __iter__(self) -> Iterator[int]:
        return iter(self.bar)

    def eval_due(self, r: int) -> bool:
        every = self.config.eval.every
        return r + 1 == self.config.rounds or bool(every and (r + 1) % every == 0)

    def checkpoint_due(self, r: int) -> bool:
        return r + 1 == self.config.rounds or (r + 1) % self.config.run.checkpoint_every == 0

    def log(self, row: Mapping[str, Any]) -> None:
        """A row for the loggers (step: its ``round``) and the progress bar."""
        for lg in self.loggers:
            lg.log(row)
        if hasattr(self.bar, "set_postfix"):
            self.bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                 tok_s=f"{row['tokens_per_s']:.0f}")

    def save(self, state: dict[str, Any]) -> Path:
        from fedgroups.fl.checkpoint import save_checkpoint

        self.last_good = save_checkpoint(self.run_dir.path, state,
                                         self.config.run.keep_checkpoints)
        return self.last_good

    def nonfinite(self, e: NonFiniteLossError) -> NonFiniteLossError:
        then = (f"last good checkpoint: {self.last_good}. Lower client.lr / server.lr or set "
                "client.grad_clip_norm, then resume from it (--resume)" if self.last_good else
                "no checkpoint was saved. Lower client.lr / server.lr or set "
                "client.grad_clip_norm, and start again (--overwrite)")
        return NonFiniteLossError(f"{e}; stopping. {then}.")

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()
        if hasattr(self.bar, "close"):
            self.bar.close()


# --- the command ----------------------------------------------------------------------


def resume_hint(run_dir: Path) -> str:
    """What an interrupted run left behind, and the command to continue it."""
    found = sorted((run_dir / "checkpoints").glob("round_*.pt"))
    if not found:
        return f"No checkpoint was written yet in {run_dir}; start the run again."
    return (f"The latest checkpoint is {found[-1]}; continue with: "
            f"fedgroups train --resume {run_dir}")


def exit_code(train: Callable[[], Any], report: Callable[[Any], None], run_dir: Path) -> int:
    """``fedgroups train``'s exit code: 0 done, 1 non-finite loss, 2 a user mistake, 130 ^C."""
    from fedgroups.errors import FedGroupsError

    try:
        result = train()
    except KeyboardInterrupt:
        print(f"fedgroups train: interrupted. {resume_hint(run_dir)}", file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        print(f"fedgroups train: {e}", file=sys.stderr)
        return 1
    except (FedGroupsError, FileNotFoundError) as e:
        print(f"fedgroups train: error: {e}", file=sys.stderr)
        return 2
    report(result)
    return 0
