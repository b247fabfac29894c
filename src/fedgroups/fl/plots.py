"""PNG plots of a run: losses vs round, and pre vs post personalization distributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


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
    ax.set_xlabel("round (0-based, as in metrics.csv)")
    ax.set_ylabel("loss (nats / token)")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_personalization(records_path: Path, path: Path) -> Path | None:
    """Per eval dataset, pre vs post loss across clients at the last personalized round."""
    if not records_path.exists():
        return None
    with records_path.open() as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        return None
    last = max(r["round"] for r in records)
    records = [r for r in records if r["round"] == last]
    names = sorted({r["dataset"] for r in records})
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        pre = [r["pre"] for r in records if r["dataset"] == name]
        post = [r["post"] for r in records if r["dataset"] == name]
        ax.boxplot([pre, post], showmeans=True)
        ax.set_xticks([1, 2], ["pre", "post"])
        for x, values in ((1, pre), (2, post)):
            ax.scatter([x] * len(values), values, s=8, alpha=0.5)
        ax.set_title(f"{name}: {len(pre)} clients, round {last + 1}")
        ax.set_ylabel("held-out loss per client")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
