"""Checkpoints: one ``torch.save`` file per kept round, written atomically, loaded weights-only.

A checkpoint holds plain tensors and JSON-like values only (no pickled objects):
``format`` (this module's ``FORMAT_VERSION``), ``round`` (rounds completed),
``model_args``, ``config`` (resolved), ``server`` (global parameters + server optimizer
state), ``local_store`` (per-client local parameters, empty without ``local_params``) and
``strategy`` (each update processor's state, e.g. a DP round counter).  The cohort of a
round is a pure function of (seed, round), so no sampler state is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedgroups.fl.errors import CheckpointError, RunDirError

FORMAT_VERSION = 1


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(run_dir: Path, state: dict[str, Any], keep: int) -> Path:
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round_{state['round']:06d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT_VERSION, **state}, tmp)
    tmp.replace(path)  # atomic: a crash leaves the previous checkpoint intact
    for old in sorted(folder.glob("round_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(checkpoint_dir(run_dir).glob("round_*.pt"))
    return found[-1] if found else None


def resume_point(run_dir: Path, resume: bool, has_metrics: bool) -> Path | None:
    """The checkpoint a run continues from (None: a new run), after checking that ``--resume``
    has one to continue and that a new run does not write over an old one (``has_metrics``:
    the run dir already holds a metrics log)."""
    ckpt = latest_checkpoint(run_dir)
    if resume and ckpt is None:
        raise RunDirError(f"--resume {run_dir}: no checkpoint in {checkpoint_dir(run_dir)}")
    if not resume and (has_metrics or ckpt is not None):
        raise RunDirError(f"output_dir {run_dir} already holds a run; use --resume {run_dir} "
                          "to continue it or choose another output_dir")
    return ckpt if resume else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}"
        )
    return state
