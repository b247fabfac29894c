"""PNG plots of a run: losses vs round, and pre vs post personalization distributions.

Rounds are the records' ``round`` as written: the number of rounds completed (the row
after the first round has round 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROUND_LABEL = "round (rounds completed)"
_DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(rows: list[dict[str, Any]], path: Path, *, title: str = "",
                train_label: str = "train loss (cohort)") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["round"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    if train:
        ax.plot(*zip(*train), label=train_label, linewidth=1)
    eval_names = sorted({k[: -len("/loss")] for r in rows for k in r
                         if k.startswith("eval/") and k.endswith("/loss")})
    for name in eval_names:
        pts = [(r["round"], r[f"{name}/loss"]) for r in rows if r.get(f"{name}/loss") is not None]
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_xlabel(ROUND_LABEL)
    ax.set_ylabel("loss (nats / token)")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def skipped_text(name: str, round_: int, personalized: int,
                 metrics: Sequence[dict[str, Any]] | None) -> str:
    """Which eval clients of ``name`` are missing from the plot, from the metrics row of
    that round: ``pers/<name>/skipped`` (fewer than 2 sequences: nothing to fine-tune on
    and still hold out) and ``eval/<name>/skipped`` (not one full sequence)."""
    if metrics is None:
        return "skipped clients: unknown (no metrics.jsonl beside personalization.jsonl)"
    row = next((r for r in metrics if r.get("round") == round_), None)
    if row is None:
        return f"skipped clients: unknown (metrics.jsonl has no row for round {round_})"
    pers = row.get(f"pers/{name}/skipped")
    empty = row.get(f"eval/{name}/skipped")
    parts = []
    if pers is not None:
        parts.append(f"{int(pers)} with < 2 sequences")
    if empty is not None:
        parts.append(f"{int(empty)} with no full sequence")
    if not parts:
        return "skipped clients: not recorded in metrics.jsonl"
    total = personalized + sum(int(x) for x in (pers, empty) if x is not None)
    return f"skipped {', '.join(parts)} (of {total} sampled eval clients)"


def plot_personalization(records_path: Path, path: Path, *,
                         metrics: Sequence[dict[str, Any]] | None = None) -> Path | None:
    """Per eval dataset, pre vs post loss across clients at the last personalized round:
    boxes (median line, mean marker), one dot per client, and how many eval clients were
    skipped (from ``metrics``, default the ``metrics.jsonl`` beside ``records_path``)."""
    records = _read_jsonl(records_path)
    if not records:
        return None
    if metrics is None and (records_path.parent / "metrics.jsonl").is_file():
        metrics = _read_jsonl(records_path.parent / "metrics.jsonl")
    last = max(r["round"] for r in records)
    records = [r for r in records if r["round"] == last]
    names = sorted({r["dataset"] for r in records})
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(min(14.0, 5.5 * len(names)), 4.6),
                             squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        pre = [r["pre"] for r in records if r["dataset"] == name]
        post = [r["post"] for r in records if r["dataset"] == name]
        _pre_post(ax, pre, post)
        ax.set_title(f"{name}: {len(pre)} clients, after round {last}")
        ax.set_xlabel(skipped_text(name, last, len(pre), metrics), fontsize=8)
        ax.set_ylabel("held-out loss per client (nats / token)")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _pre_post(ax: Any, pre: list[float], post: list[float]) -> None:
    """Boxes of pre and post loss with their legend: what each mark is."""
    from matplotlib.lines import Line2D

    ax.boxplot([pre, post], showmeans=True, medianprops={"color": "C1"},
               meanprops={"marker": "^", "markerfacecolor": "C2", "markeredgecolor": "C2"})
    for x, values in ((1, pre), (2, post)):
        ax.scatter([x] * len(values), values, s=10, alpha=0.5, color="C0")
    ax.set_xticks([1, 2], ["before fine-tuning", "after fine-tuning"])
    lows = [a - b for a, b in zip(pre, post) if math.isfinite(a) and math.isfinite(b)]
    better = sum(1 for d in lows if d > 0)
    handles = [Line2D([], [], color="C0", marker="o", linestyle="", alpha=0.5,
                      label="one client"),
               Line2D([], [], color="C1", label="median"),
               Line2D([], [], color="C2", marker="^", linestyle="", label="mean"),
               Line2D([], [], color="black", label="box: 25–75%, whiskers: 1.5 IQR")]
    ax.legend(handles=handles, fontsize=8, loc="best",
              title=f"{better} of {len(lows)} clients improved", title_fontsize=8)
