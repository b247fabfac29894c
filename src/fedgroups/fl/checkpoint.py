"""Checkpoints: one ``torch.save`` file per kept round, written atomically, loaded weights-only.

A checkpoint holds plain tensors and JSON-like values only (no pickled objects):
``round`` (rounds completed), ``model_args``, ``config`` (resolved), ``server`` (global
parameters + server optimizer state), ``local`` (per-client local parameters, if any) and
``sampler`` (the cohort sampler's state: a pure function of seed and round).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}"
        )
    return state
