"""PNGs for ``fedgroups compare``: perplexity per federation per method, loss curves, and
the key-layer attention (who attended to whom at the last round, and how it moved).

Every method has one colour in every plot and every comparison (:func:`method_colour`).
Rounds on the axes are rounds completed, the records' ``round`` as written.
matplotlib only (the ``plots`` extra), imported when a plot is drawn, in files only.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedgroups.fl.hierarchy import records as rec

if TYPE_CHECKING:
    from fedgroups.fl.hierarchy.results import Row, Run

ROUND_LABEL = "round (rounds completed)"
# Attention panels per figure row; the figure grows downwards beyond it.
_PANELS_PER_ROW = 4
# Above this many cells a heatmap is not annotated with its numbers.
_ANNOTATE_CELLS = 80
# Perplexity bars: at most this many bars, and federations, per panel (more wrap into
# rows of panels), and the figure at most this wide (inches at _DPI: 1,540 px).
_BARS_PER_PANEL = 40
_GROUPS_PER_PANEL = 12
_MAX_WIDTH_IN = 14.0
_DPI = 110
_FONT = {"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 10}

# Known methods in a fixed order take the tab10 colours; any other name (a flat run's
# variant such as "fedavg schedule.name=warmup_cosine") one of _OTHER_COLOURS by a
# stable hash of the name, so a method's colour never depends on argument order.
KNOWN_METHODS = ("fl", "hierfavg", "fedper", "local", "worldlm", "worldlm-noresidual",
                 "worldlm-mean", "fedavg", "fedsgd")
_KNOWN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                  "#e377c2", "#bcbd22", "#17becf")
_OTHER_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#000000",
                  "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194", "#6b6ecf")


def method_colour(method: str) -> str:
    """The colour of ``method`` in every plot: fixed for known methods, else a stable hash."""
    if method in KNOWN_METHODS:
        return _KNOWN_COLOURS[KNOWN_METHODS.index(method)]
    return _OTHER_COLOURS[zlib.crc32(method.encode()) % len(_OTHER_COLOURS)]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def bar_panels(groups: Sequence[str], methods: int) -> list[list[str]]:
    """Federations split into panels of at most _BARS_PER_PANEL bars (and
    _GROUPS_PER_PANEL federations), as even as possible."""
    per = max(1, min(_GROUPS_PER_PANEL, _BARS_PER_PANEL // max(1, methods)))
    count = math.ceil(len(groups) / per)
    per = math.ceil(len(groups) / count)
    return [list(groups[i:i + per]) for i in range(0, len(groups), per)]


def plot_perplexity(rows: Sequence[Row], leaves: Sequence[str], path: Path) -> Path:
    """Grouped bars: one group per leaf federation (and the mean), one bar per method, the
    whisker spanning the runs (seeds) of that method; many federations wrap into rows."""
    plt = _pyplot()
    m = max(1, len(rows))
    panels = bar_panels([*leaves, rec.MEAN_FEDERATION], m)
    per = len(panels[0])
    width_in = min(_MAX_WIDTH_IN, max(7.0, 1.5 + per * (0.3 * m + 0.4)))
    whiskers = any(len(r.runs) > 1 for r in rows)
    legend_cols = _legend_columns([r.method for r in rows], width_in)
    top_in = 0.3 + 0.28 * math.ceil(m / legend_cols)  # title, then the legend, then panels
    height_in = top_in + 3.2 * len(panels)
    with plt.rc_context(_FONT):
        fig, axes = plt.subplots(len(panels), 1, figsize=(width_in, height_in),
                                 squeeze=False, sharey=True)
        for ax, groups in zip(axes[:, 0], panels):
            _bars(ax, rows, groups, whiskers)
            ax.set_xlim(-0.5, per - 0.5)
            ax.set_ylabel("held-out perplexity")
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle("each leaf federation's model on its own held-out groups "
                     "(lower is better)", y=1 - 0.08 / height_in, va="top")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=legend_cols, frameon=False,
                   bbox_to_anchor=(0.5, 1 - 0.35 / height_in))
        fig.tight_layout(rect=(0, 0, 1, 1 - top_in / height_in), pad=0.6)
        fig.savefig(path, dpi=_DPI)
        plt.close(fig)
    return path


def _legend_columns(methods: Sequence[str], width_in: float) -> int:
    """Columns of a legend above the figure: at most 5, as many as fit, rows balanced."""
    per_item = 0.8 + 0.085 * max((len(m) for m in methods), default=1)  # inches, font 10
    cols = max(1, min(5, len(methods), int((width_in - 0.3) // per_item)))
    return math.ceil(len(methods) / math.ceil(len(methods) / cols))


def _bars(ax: Any, rows: Sequence[Row], groups: Sequence[str], whiskers: bool) -> None:
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        cells = [row.mean_ppl if g == rec.MEAN_FEDERATION else row.ppl[g] for g in groups]
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        heights = [c.mean if c else math.nan for c in cells]
        err = [[c.mean - c.low if c else 0 for c in cells],
               [c.high - c.mean if c else 0 for c in cells]]
        ax.bar(xs, heights, width, label=f"{row.method} (n={len(row.runs)})",
               color=method_colour(row.method), yerr=err if whiskers else None, capsize=2)
    names = ["mean" if g == rec.MEAN_FEDERATION else _short(g) for g in groups]
    ax.set_xticks(range(len(groups)), names,
                  rotation=30 if len(groups) > 8 else 0)


def eval_curve(run: Run) -> list[tuple[int, float]]:
    """(round, mean held-out loss) of a run's evaluations, rounds as recorded."""
    mean = sorted((e for e in run.evals if e.federation == rec.MEAN_FEDERATION),
                  key=lambda e: e.round)
    return [(e.round, e.loss) for e in mean if math.isfinite(e.loss)]


def plot_losses(rows: Sequence[Row], path: Path) -> Path:
    """Left: training loss of the whole cohort (the root's row) against tokens seen;
    right: the mean held-out loss against the round. One colour per method, one line per
    run."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    width_in = 12.0
    cols = _legend_columns([r.method for r in rows], width_in)
    top_in = 0.15 + 0.28 * math.ceil(max(1, len(rows)) / cols)
    height_in = top_in + 4.2
    with plt.rc_context(_FONT):
        fig, (left, right) = plt.subplots(1, 2, figsize=(width_in, height_in))
        for row in rows:
            colour = method_colour(row.method)
            for j, run in enumerate(row.runs):
                label = row.method if j == 0 else None
                top = sorted((m for m in run.metrics if m.level == 0), key=lambda m: m.round)
                pts = [(m.cum_tokens, m.train_loss) for m in top if math.isfinite(m.train_loss)]
                if pts:
                    left.plot(*zip(*pts), color=colour, linewidth=1, label=label)
                pts = eval_curve(run)
                if pts:
                    right.plot(*zip(*pts), color=colour, marker="o", markersize=3,
                               label=label)
        left.set_xlabel("training tokens")
        left.set_ylabel("training loss (nats / token)")
        left.set_title("training loss (all clients of the round)")
        right.set_xlabel(ROUND_LABEL)
        right.set_ylabel("held-out loss (nats / token)")
        right.set_title("mean over leaf federations (eval datasets)")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in (left, right):
            ax.grid(alpha=0.3)
        handles = {}
        for ax in (left, right):
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=cols,
                   frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 1 - top_in / height_in), pad=0.6)
        fig.savefig(path, dpi=_DPI)
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
    the root rounds completed: an aggregation that ends the node's k-th of n inner rounds
    in root round r is at r - 1 + k / n (the last one of round r at r)."""
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
            seen[r.round] += 1
            x = r.round - 1 + seen[r.round] / inner[r.round]
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
        heat.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
        heat.set_yticks(range(len(r.rows)), [_short(x) for x in r.rows], fontsize=8)
        heat.set_title(f"{_short(node)}: after round {r.round} (τ={r.tau:g})", fontsize=9)
        if len(r.rows) * len(cols) <= _ANNOTATE_CELLS:
            for i, values in enumerate(r.matrix):
                for j, v in enumerate(values):
                    heat.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                              color="white" if v < 0.6 else "black")
        fig.colorbar(image, ax=heat, fraction=0.046)
        xs, diag, resid = zip(*trace[node])
        line.plot(xs, diag, marker=".", label="self weight a_cc")
        if any(r.residual for r in records if r.node == node):
            line.plot(xs, resid, marker=".", linestyle="--", label="on residual keys")
        line.set_ylim(0, 1.02)
        line.set_xlabel(ROUND_LABEL, fontsize=8)
        line.set_title(f"{_short(node)}: over rounds", fontsize=9)
        line.grid(alpha=0.3)
        line.legend(fontsize=7)
    for k in range(len(nodes), (nrows // 2) * ncols):
        axes[2 * (k // ncols)][k % ncols].axis("off")
        axes[2 * (k // ncols) + 1][k % ncols].axis("off")
    fig.suptitle(f"{run.method}: key-layer attention at level {level}\n"
                 "(rows attend to columns; each row sums to 1)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
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
            method = re.sub(r"[^A-Za-z0-9._-]+", "_", row.method)  # a label may hold "=", " "
            name = f"attention-{method}-level{level}.png"
            written.append(plot_attention(run, level, out / name))
    return written
