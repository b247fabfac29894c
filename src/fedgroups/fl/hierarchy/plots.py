"""PNGs for ``fedgroups compare``: perplexity per federation per method, loss curves, and
the key-layer attention (who attended to whom at the last round, and how it moved).

matplotlib only (the ``plots`` extra), imported when a plot is drawn, in files only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedgroups.fl.hierarchy import records as rec

if TYPE_CHECKING:
    from fedgroups.fl.hierarchy.results import Row, Run

# Attention panels per figure row; the figure grows downwards beyond it.
_PANELS_PER_ROW = 4
# Above this many cells a heatmap is not annotated with its numbers.
_ANNOTATE_CELLS = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def plot_perplexity(rows: Sequence[Row], leaves: Sequence[str], path: Path) -> Path:
    """Grouped bars: one group per leaf federation (and the mean), one bar per method, the
    whisker spanning the runs (seeds) of that method."""
    plt = _pyplot()
    groups = [*leaves, "mean"]
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(rows)) / 2 + 2),
                                    4.2))
    for i, row in enumerate(rows):
        cells = [*(row.ppl[leaf] for leaf in leaves), row.mean_ppl]
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        heights = [c.mean if c else math.nan for c in cells]
        err = [[c.mean - c.low if c else 0 for c in cells],
               [c.high - c.mean if c else 0 for c in cells]]
        ax.bar(xs, heights, width, label=f"{row.method} (n={len(row.runs)})",
               yerr=err if any(len(r.runs) > 1 for r in rows) else None, capsize=2)
    ax.set_xticks(range(len(groups)), [_short(g) for g in groups],
                  rotation=45 if len(groups) > 8 else 0)
    ax.set_ylabel("held-out perplexity (lower is better)")
    ax.set_title("each leaf federation's model on its own held-out groups")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_losses(rows: Sequence[Row], path: Path) -> Path:
    """Left: training loss of the whole cohort (the root's row) against tokens seen;
    right: the token-weighted mean held-out loss against the round. One colour per method,
    one line per run."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(rows):
        colour = colours[i % len(colours)]
        for j, run in enumerate(row.runs):
            label = row.method if j == 0 else None
            top = sorted((m for m in run.metrics if m.level == 0), key=lambda m: m.round)
            pts = [(m.cum_tokens, m.train_loss) for m in top if math.isfinite(m.train_loss)]
            if pts:
                left.plot(*zip(*pts), color=colour, linewidth=1, label=label)
            mean = sorted((e for e in run.evals if e.federation == rec.MEAN_FEDERATION),
                          key=lambda e: e.round)
            pts = [(e.round + 1, e.loss) for e in mean if math.isfinite(e.loss)]
            if pts:
                right.plot(*zip(*pts), color=colour, marker="o", markersize=3, label=label)
    left.set_xlabel("training tokens")
    left.set_ylabel("training loss (nats / token)")
    left.set_title("training loss (all clients of the round)")
    right.set_xlabel("round")
    right.set_ylabel("held-out loss (nats / token)")
    right.set_title("token-weighted mean over leaf federations")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _last_per_node(records: Sequence[rec.AttentionRecord]) -> dict[str, rec.AttentionRecord]:
    last: dict[str, rec.AttentionRecord] = {}
    for r in records:
        if r.node not in last or (r.round, r.node_round) >= (last[r.node].round,
                                                              last[r.node].node_round):
            last[r.node] = r
    return last


def attention_trace(records: Sequence[rec.AttentionRecord]) -> dict[str, list[tuple]]:
    """node -> [(x, mean self-weight, mean residual mass)] over its aggregations, x being
    the root round plus the fraction of the node's inner rounds done in it."""
    per_node: dict[str, list[rec.AttentionRecord]] = defaultdict(list)
    for r in records:
        per_node[r.node].append(r)
    out = {}
    for node, recs in per_node.items():
        recs.sort(key=lambda r: (r.round, r.node_round))
        inner: dict[int, int] = defaultdict(int)
        for r in recs:
            inner[r.round] += 1
        seen: dict[int, int] = defaultdict(int)
        points = []
        for r in recs:
            x = r.round + seen[r.round] / inner[r.round]
            seen[r.round] += 1
            n = len(r.rows)
            diag = sum(r.matrix[i][i] for i in range(n)) / n if n else math.nan
            resid = (sum(sum(v for v, is_res in zip(row, r.residual) if is_res)
                         for row in r.matrix) / n) if n else math.nan
            points.append((x, diag, resid))
        out[node] = points
    return out


def plot_attention(run: Run, level: int, path: Path) -> Path:
    """For one run and one aggregation level: per node at that level, a heatmap of the last
    aggregation (rows: its children that took part; columns: them, then residual keys
    routed from other sub-federations, marked ↪) and, below it, the mean self-weight a_cc
    and the mean weight on residual keys over the rounds."""
    plt = _pyplot()
    records = [r for r in run.attention if r.level == level]
    last = _last_per_node(records)
    trace = attention_trace(records)
    nodes = sorted(last)
    ncols = min(_PANELS_PER_ROW, len(nodes))
    nrows = 2 * math.ceil(len(nodes) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(5.0, 3.6 * ncols), 3.2 * nrows), squeeze=False)
    for k, node in enumerate(nodes):
        r = last[node]
        heat = axes[2 * (k // ncols)][k % ncols]
        line = axes[2 * (k // ncols) + 1][k % ncols]
        image = heat.imshow(r.matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        cols = [("↪" if res else "") + _short(c) for c, res in zip(r.columns, r.residual)]
        heat.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        heat.set_yticks(range(len(r.rows)), [_short(x) for x in r.rows], fontsize=7)
        heat.set_title(f"{_short(node)}: round {r.round} (τ={r.tau:g})", fontsize=9)
        if len(r.rows) * len(cols) <= _ANNOTATE_CELLS:
            for i, values in enumerate(r.matrix):
                for j, v in enumerate(values):
                    heat.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                              color="white" if v < 0.6 else "black")
        fig.colorbar(image, ax=heat, fraction=0.046)
        xs, diag, resid = zip(*trace[node])
        line.plot(xs, diag, marker=".", label="self weight a_cc")
        if any(r.residual for r in records if r.node == node):
            line.plot(xs, resid, marker=".", linestyle="--", label="on residual keys")
        line.set_ylim(0, 1.02)
        line.set_xlabel("round")
        line.set_title(f"{_short(node)}: over rounds", fontsize=9)
        line.grid(alpha=0.3)
        line.legend(fontsize=7)
    for k in range(len(nodes), (nrows // 2) * ncols):
        axes[2 * (k // ncols)][k % ncols].axis("off")
        axes[2 * (k // ncols) + 1][k % ncols].axis("off")
    fig.suptitle(f"{run.method}: key-layer attention at level {level}\n"
                 "(rows attend to columns; each row sums to 1)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(rows: Sequence[Row], leaves: Sequence[str], out: Path) -> list[Path]:
    """Every PNG of a comparison; attention for the first run of each method that has any."""
    written = [plot_perplexity(rows, leaves, out / "perplexity.png"),
               plot_losses(rows, out / "loss.png")]
    for row in rows:
        run = next((r for r in row.runs if r.attention), None)
        if run is None:
            continue
        for level in sorted({a.level for a in run.attention}):
            name = f"attention-{row.method}-level{level}.png"
            written.append(plot_attention(run, level, out / name))
    return written
