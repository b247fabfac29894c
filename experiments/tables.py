"""Results of the experiments: numbers over seeds as mean [min–max], tables as CSV +
Markdown, figures as PNG."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, min, max) over seeds."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return math.nan, math.nan, math.nan
    return sum(v) / len(v), min(v), max(v)


def fmt(values: Sequence[float], digits: int = 3) -> str:
    """``mean [min–max]`` over seeds."""
    m, lo, hi = spread(values)
    if not math.isfinite(m):
        return "-"
    return f"{m:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "-"
    return str(v)


def write_table(stem: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                csv_only: Sequence[str] = ()) -> None:
    """``stem.csv`` (full precision; ``columns`` then ``csv_only``, e.g. the numbers
    behind a ``mean [min–max]`` cell) and ``stem.md`` (a Markdown table of ``columns``)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with stem.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*columns, *csv_only], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as a PNG (its folder made), then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
