"""What the experiment scripts share: the corpus and `fedgroups train` runs (tuning and the
final runs' settings: ``tuning.py``; tables: ``tables.py``).

Every training run is the public command ``fedgroups train configs/dg-meta.yaml --set
...`` (its ``main``, in this process; in subprocesses with ``--jobs`` > 1), so what is
measured is what a user reruns.  To keep a long experiment away from edits in the
checkout, run it on a snapshot: ``git archive HEAD src | tar -x -C /tmp/snap`` and
``PYTHONPATH=/tmp/snap/src python experiments/...``.  A finished run is kept (``runs/experiments/NAME`` with a
``done.json`` naming its settings) and reused when a script is run again with the same
settings, so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "dg-meta.yaml"
RESULTS = REPO / "experiments" / "results"
ALGORITHMS = ("fedavg", "fedsgd")
# The smoke corpus: three small distributions every dev install has.
SMOKE_DISTRIBUTIONS = "packaging,pluggy,iniconfig"


@dataclass(frozen=True)
class Scale:
    """How big an experiment is; ``FULL`` is the default, ``SMOKE`` runs in seconds."""

    name: str
    rounds: int
    tune_rounds: int
    seeds: tuple[int, ...]
    client_lrs: tuple[float, ...]  # FedAvg's client SGD grid (FedSGD has no client lr)
    server_lrs: tuple[float, ...]  # FedAvg's server Adam grid
    fedsgd_server_lrs: tuple[float, ...]  # FedSGD's server Adam grid
    distributions: str | None  # pydocs recipe option; None = every installed distribution
    eval_every: int
    extra: tuple[str, ...] = ()  # more --set overrides


FULL = Scale(name="full", rounds=60, tune_rounds=60, seeds=(0, 1, 2),
             client_lrs=(0.25, 1.0), server_lrs=(1e-3, 3e-3, 1e-2),
             fedsgd_server_lrs=(1e-3, 3e-3, 1e-2, 3e-2), distributions=None, eval_every=20)
SMOKE = Scale(name="smoke", rounds=3, tune_rounds=1, seeds=(0, 1), client_lrs=(0.3,),
              server_lrs=(3e-3,), fedsgd_server_lrs=(3e-3,),
              distributions=SMOKE_DISTRIBUTIONS, eval_every=1,
              extra=("cohort_size=2", "client.max_sequences=4", "client.min_sequences=1",
                     "eval.max_sequences=4", "eval.datasets.0.max_clients=4",
                     "data.split={train: 0.6, val: 0.2, test: 0.2}",
                     "eval.datasets.0.split={train: 0.6, val: 0.2, test: 0.2}",
                     "tokenizer.vocab_size=300", "tokenizer.sample_examples=200",
                     "model.seq_len=16"))


@dataclass
class Context:
    """Where an experiment reads and writes, and how it runs ``fedgroups train``."""

    scale: Scale
    corpus: Path
    runs: Path  # run directories (not committed)
    results: Path  # tables and plots (committed for the full scale)
    jobs: int = 1  # 1: runs in this process, one after another; more: subprocesses
    changed: bool = False  # settings changed with --set (tables made without them differ)
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))

    def base(self) -> list[str]:
        """Overrides every run shares: data paths, the shared tokenizer, the scale."""
        corpus = str(self.corpus)
        return [f"data.path={corpus}", f"eval.datasets.0.path={corpus}",
                f"tokenizer.path={self.runs / 'tokenizer' / 'tokenizer.json'}",
                f"eval.every={self.scale.eval_every}", *self.scale.extra]


def add_arguments(parser: Any) -> None:
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny corpus and a few rounds (seconds): checks the script works")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the pydocs dataset (built there if missing; default out/pydocs)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="where run directories go (default runs/experiments[-smoke])")
    parser.add_argument("--results", type=Path, default=None,
                        help="where tables and plots go (default experiments/results/NAME)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="training runs at once (more than 1: in subprocesses)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="extra fedgroups train setting for every run, e.g. "
                        "--set model.preset=100m --set run.device=cuda")


def context(args: Any, name: str) -> Context:
    scale = SMOKE if args.smoke else FULL
    if args.overrides:
        scale = Scale(**{**scale.__dict__, "extra": scale.extra + tuple(args.overrides)})
    suffix = "-smoke" if args.smoke else ""
    return Context(
        scale=scale,
        corpus=(args.corpus or REPO / "out" / f"pydocs{suffix}").resolve(),
        runs=(args.runs or REPO / "runs" / f"experiments{suffix}").resolve(),
        results=(args.results or RESULTS / f"{name}{suffix}").resolve(),
        jobs=args.jobs, changed=bool(args.overrides))


# --- corpus and runs ---------------------------------------------------------------------


def _env() -> dict[str, str]:
    """The environment of a subprocess: this one, with this process's import path first
    (so a snapshot given by PYTHONPATH reaches the runs too)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def fedgroups(ctx: Context, argv: list[str], log: Path, *, subprocess_: bool) -> None:
    """``fedgroups ARGV`` (``build`` or ``train``), its output in ``log``; raises on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if subprocess_:
        with log.open("w") as f:
            code = subprocess.run([sys.executable, "-m", "fedgroups.cli", *argv], env=_env(),
                                  stdout=f, stderr=subprocess.STDOUT).returncode
    else:
        from fedgroups.cli import main

        with log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse errors
                code = int(e.code or 0)
    if code != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"fedgroups {' '.join(argv)} failed (exit {code}); log {log}:\n{tail}")


def ensure_corpus(ctx: Context) -> None:
    """Build the pydocs corpus with ``fedgroups build --recipe pydocs`` unless it exists."""
    import fedgroups as fg
    from fedgroups.errors import FedGroupsError

    try:
        fg.open(ctx.corpus)
        return
    except FedGroupsError:
        pass  # not built yet (or unfinished): build it
    argv = ["build", "--recipe", "pydocs", str(ctx.corpus), "--overwrite", "--quiet"]
    if ctx.scale.distributions:
        argv += ["--recipe-option", f"distributions={ctx.scale.distributions}"]
    ctx.log("building the corpus: fedgroups " + " ".join(argv))
    t0 = time.perf_counter()
    fedgroups(ctx, argv, ctx.runs / "build.log", subprocess_=False)
    ctx.log(f"  built in {time.perf_counter() - t0:.0f} s")


@dataclass(frozen=True)
class Run:
    name: str
    overrides: tuple[str, ...]


def train(ctx: Context, run: Run, *, wait: bool = True) -> Path | None:
    """Run (or reuse) one ``fedgroups train``; return its run directory.

    A lock file lets two scripts share a run directory: a run another live process is
    training is waited for (or, with ``wait=False``, skipped: None)."""
    out = ctx.runs / run.name
    settings = [*ctx.base(), *run.overrides, f"output_dir={out}"]
    done = out / "done.json"
    lock = ctx.runs / "locks" / (run.name.replace("/", "--") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        if done.exists() and json.loads(done.read_text()).get("settings") == settings:
            return out
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _alive(lock):
                lock.unlink(missing_ok=True)
            elif not wait:
                return None
            else:
                time.sleep(5)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        break
    try:
        t0, c0 = time.perf_counter(), _cpu()
        fedgroups(ctx, _train_argv(settings), ctx.runs / "logs" / f"{run.name}.log",
                  subprocess_=ctx.jobs > 1)
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        done.write_text(json.dumps({"settings": settings, "seconds": seconds,
                                    "cpu_seconds": cpu}))
    finally:
        lock.unlink(missing_ok=True)
    ctx.log(f"  {run.name}: {seconds:.0f} s")
    return out


def _alive(lock: Path) -> bool:
    """Whether the process that wrote ``lock`` still runs."""
    try:
        pid = int(lock.read_text() or "0")
    except (OSError, ValueError):
        return True  # being written right now
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _train_argv(settings: Sequence[str]) -> list[str]:
    argv = ["train", str(CONFIG), "--no-progress", "--overwrite"]
    for s in settings:
        argv += ["--set", s]
    return argv


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def train_all(ctx: Context, runs: Sequence[Run]) -> list[Path]:
    """Every run, ``ctx.jobs`` at a time; runs another script is training are left to the
    end and then waited for."""
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        first = list(pool.map(lambda r: train(ctx, r, wait=False), runs))
        rest = list(pool.map(lambda r: train(ctx, r), [r for r, d in zip(runs, first)
                                                         if d is None]))
    it = iter(rest)
    return [d if d is not None else next(it) for d in first]  # type: ignore[misc]


def ensure_tokenizer(ctx: Context) -> None:
    """One tokenizer for every run (trained on a seeded sample of the training clients),
    so that losses of different runs are in the same units."""
    path = ctx.runs / "tokenizer" / "tokenizer.json"
    if path.exists():
        return
    out = ctx.runs / "tokenizer-run"
    settings = [f"data.path={ctx.corpus}", f"eval.datasets.0.path={ctx.corpus}",
                *ctx.scale.extra, "rounds=1", "eval.datasets=[]",
                "personalization.enabled=false", f"output_dir={out}"]
    fedgroups(ctx, _train_argv(settings), ctx.runs / "logs" / "tokenizer.log",
              subprocess_=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "tokenizer.json", path)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]


def personalization(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "personalization.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
