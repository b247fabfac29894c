"""One PNG that shows a grouped dataset's shape: size histograms on log scales, the
rank–size curve and, where a label column is named, a heatmap of label distributions."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.stats.labels import count_matrix


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise SettingError("plots need matplotlib: pip install 'fedgroups[plots]'") from e
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    return plt


def _log_hist(ax: Any, values: np.ndarray, what: str, color: str) -> None:
    values = values[values > 0]
    if len(values) == 0:
        ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = values.min(), values.max()
    if hi > lo:
        bins = np.logspace(np.log10(lo), np.log10(hi * 1.0001), 40)
    else:  # every group the same size: one bar around it
        bins = np.logspace(np.log10(lo / 2), np.log10(lo * 2), 5)
    ax.hist(values, bins=bins, color=color, alpha=0.85)
    ax.set(xscale="log", yscale="log", xlabel=f"{what} per group", ylabel="groups")
    med = float(np.median(values))
    ax.axvline(med, color="k", lw=1, ls="--")
    ax.set_title(f"{what} per group (median {med:,.0f}, max {hi:,.0f})", fontsize=10)
    _plain_log_ticks(ax)


def _plain_log_ticks(ax: Any) -> None:
    """Label only the decades: minor labels (2×10³, 3×10³ …) overlap on narrow axes."""
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)


def _rank_size(ax: Any, sizes: np.ndarray) -> None:
    s = np.sort(sizes)[::-1]
    ranks = np.arange(1, len(s) + 1)
    ax.plot(ranks, s, color="C3")
    share = s.cumsum() / max(s.sum(), 1)
    top = int(np.searchsorted(share, 0.5)) + 1
    ax.set(xscale="log", yscale="log", xlabel="group rank (largest first)",
           ylabel="examples")
    ax.set_title(f"rank–size: {top:,} of {len(s):,} groups hold half the examples", fontsize=10)
    _plain_log_ticks(ax)


def _heatmap(fig: Any, ax: Any, counts: pa.Table, label: str, top_groups: int,
             top_labels: int) -> None:
    keys, labels, m = count_matrix(counts)
    if len(keys) == 0:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
        return
    rows = np.argsort(-m.sum(axis=1), kind="stable")[:top_groups]
    cols = np.argsort(-m.sum(axis=0), kind="stable")[:top_labels]
    shown = m[np.ix_(rows, cols)].astype(np.float64)
    names = [str(labels[c]) for c in cols]
    if len(labels) > top_labels:  # everything else in one column, so rows still sum to 1
        shown = np.hstack([shown, (m[rows].sum(axis=1) - shown.sum(axis=1))[:, None]])
        names.append("other")
    # First row: the whole dataset's distribution, the reference every group differs from.
    shown = np.vstack([m.sum(axis=0)[cols].astype(np.float64)[None, :]
                       if len(labels) <= top_labels else
                       np.append(m.sum(axis=0)[cols], m.sum() - m.sum(axis=0)[cols].sum())[None],
                       shown])
    dist = shown / np.maximum(shown.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(dist, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n[:12] for n in names], rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows) + 1))
    ax.set_yticklabels(["(all groups)"] + [str(keys[r])[:24] for r in rows], fontsize=7)
    ax.axhline(0.5, color="w", lw=2)
    ax.set_xlabel(f"{label} (most frequent first)")
    ax.set_title(f"label distribution of the {len(rows)} largest groups", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of the group")


def plot_stats(groups: pa.Table, path: str | os.PathLike[str], *, title: str = "",
               label_counts: pa.Table | None = None, label: str = "label",
               top_groups: int = 30, top_labels: int = 20) -> str:
    """Write the stats figure for ``groups`` (from ``group_table``) to ``path``; return it."""
    plt = _pyplot()
    measures = [c for c in ("examples", "words", "bytes", "tokens") if c in groups.column_names]
    with_labels = label_counts is not None
    ncols = 3 if with_labels else 2
    fig = plt.figure(figsize=(6 * ncols, 9), constrained_layout=True)
    grid = fig.add_gridspec(2, ncols)
    panels = [(0, 0), (0, 1), (1, 0), (1, 1)]
    colors = {"examples": "C0", "words": "C2", "bytes": "C1", "tokens": "C4"}
    shown = [m for m in measures if m != "tokens"][:3]
    for (r, c), name in zip(panels, shown):
        ax = fig.add_subplot(grid[r, c])
        _log_hist(ax, groups.column(name).to_numpy(zero_copy_only=False), name, colors[name])
    _rank_size(fig.add_subplot(grid[1, 1]),
               groups.column("examples").to_numpy(zero_copy_only=False))
    if label_counts is not None:
        _heatmap(fig, fig.add_subplot(grid[:, 2]), label_counts, label, top_groups, top_labels)
    fig.suptitle(title or "group statistics", fontsize=12)
    out = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
