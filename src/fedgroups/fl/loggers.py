"""Opt-in metric sinks besides ``metrics.jsonl`` / ``metrics.csv``: TensorBoard, Weights & Biases.

``run.loggers: [tensorboard, wandb]``.  Each gets every round's numeric metrics at step
``round`` (rounds completed, as in ``metrics.csv``: 1 after the first round).  A resume
rewrites the rounds after its checkpoint, so TensorBoard purges their old events
(``purge_step``) instead of showing each step twice.  TensorBoard event files go to
``RUN_DIR/tensorboard``; Weights & Biases writes under ``RUN_DIR/wandb`` and follows its own
environment (``WANDB_MODE=offline`` for no network, ``WANDB_PROJECT``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from fedgroups.fl.errors import ConfigError

LoggerName = Literal["tensorboard", "wandb"]


class MetricsLogger(Protocol):
    def log(self, row: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def _scalars(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if k != "round" and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


class TensorBoardLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "run.loggers: 'tensorboard' needs the tensorboard package: "
                "pip install 'fedgroups[loggers]' (or pip install tensorboard)"
            ) from None
        self.dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir), purge_step=purge_step)

    def log(self, row: Mapping[str, Any]) -> None:
        for k, v in _scalars(row).items():
            self.writer.add_scalar(k, v, global_step=int(row["round"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, config: Mapping[str, Any], resume: bool) -> None:
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "run.loggers: 'wandb' needs the wandb package: pip install wandb "
                "(set WANDB_MODE=offline to log without an account or network)"
            ) from None
        self._wandb = wandb
        # The run id is the run directory's name: a resumed run continues the same W&B run.
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "fedgroups"),
                              name=run_dir.name, id=_wandb_id(run_dir), dir=str(run_dir),
                              config=dict(config), resume="allow" if resume else None)

    def log(self, row: Mapping[str, Any]) -> None:
        self.run.log(_scalars(row), step=int(row["round"]))

    def close(self) -> None:
        self.run.finish()


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]


def make_loggers(names: tuple[str, ...], run_dir: Path, config: Mapping[str, Any],
                 resume: bool, purge_step: int | None = None) -> list[MetricsLogger]:
    """The sinks ``names``; ``purge_step``: the first step a resumed run writes again."""
    out: list[MetricsLogger] = []
    for name in names:
        if name == "tensorboard":
            out.append(TensorBoardLogger(run_dir, purge_step))
        elif name == "wandb":
            out.append(WandbLogger(run_dir, config, resume))
        else:  # config parsing allows only the names above
            raise ConfigError(f"run.loggers: unknown logger {name!r}")
    return out
