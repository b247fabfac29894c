"""``fedgroups compare RUN...``: hierarchical runs side by side, as one table and PNGs.

Each run directory is read and summarised by ``results.py``.
Runs of the same method (seeds) make one row: each number is their mean, with the range
(min–max) over runs beside it. The table has, per method, the perplexity of each leaf
federation's model on its own held-out groups at the last evaluation, their token-weighted
mean, the training tokens and client steps (equal compute means equal columns here), and ε
where differential privacy ran. It is printed, and written as ``compare.md`` and
``compare.csv`` beside the plots (``plots.py``).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedgroups.fl.hierarchy.results import (  # noqa: F401  (RunDirError, load_run: API)
    Row,
    Run,
    RunDirError,
    load_run,
    make_rows,
    short_name,
)

# --- the table ------------------------------------------------------------------------------

def header(leaves: Sequence[str], with_eps: bool) -> list[str]:
    names = [short_name(leaf) for leaf in leaves]
    if len(set(names)) < len(names):  # two leaves share a name: keep their paths
        names = list(leaves)
    cols = ["method", "runs", *names, "mean ppl", "tokens", "client steps"]
    return cols + (["ε"] if with_eps else [])


def table_rows(rows: Sequence[Row], leaves: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The table as text cells (ranges over runs in brackets)."""
    with_eps = any(r.epsilon is not None for r in rows)
    body = []
    for r in rows:
        cells = [r.method, str(len(r.runs))]
        cells += [c.text() if c else "–" for c in (r.ppl[leaf] for leaf in leaves)]
        cells += [r.mean_ppl.text() if r.mean_ppl else "–",
                  r.tokens.text(0) if r.tokens else "–",
                  r.steps.text(0) if r.steps else "–"]
        if with_eps:
            cells.append(r.epsilon.text() if r.epsilon else "–")
        body.append(cells)
    return header(leaves, with_eps), body


def markdown(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Row], leaves: Sequence[str], path: Path) -> None:
    """Machine-readable: one line per method, means and ranges in separate columns."""
    fields = ["method", "runs"]
    for name in [*leaves, "mean_ppl", "mean_loss", "tokens", "steps", "epsilon"]:
        fields += [name, f"{name}_min", f"{name}_max"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            line: list[Any] = [r.method, len(r.runs)]
            for cell in [*(r.ppl[leaf] for leaf in leaves), r.mean_ppl, r.mean_loss,
                         r.tokens, r.steps, r.epsilon]:
                line += [cell.mean, cell.low, cell.high] if cell else ["", "", ""]
            w.writerow(line)


def compute_notes(rows: Sequence[Row]) -> list[str]:
    """Say whether the methods had equal compute, and which runs are unfinished."""
    notes = []
    steps = {r.method: r.steps.mean for r in rows if r.steps}
    tokens = {r.method: r.tokens.mean for r in rows if r.tokens}
    if len(steps) > 1:
        lo, hi = min(steps.values()), max(steps.values())
        tlo, thi = min(tokens.values()), max(tokens.values())
        if hi > lo * 1.01 or thi > tlo * 1.01:
            notes.append(f"compute differs across methods: client steps {lo:,.0f}–{hi:,.0f}, "
                         f"tokens {tlo:,.0f}–{thi:,.0f} (not an equal-compute comparison)")
        else:
            notes.append(f"equal compute: {hi:,.0f} client steps, {thi:,.0f} tokens per run "
                         "(within 1%)")
    for r in rows:
        for run in r.runs:
            if not run.finished:
                notes.append(f"{run.path}: unfinished ({run.summary.rounds} of "
                             f"{run.rounds_planned} rounds)")
    return notes


# --- the command ----------------------------------------------------------------------------

def compare(run_dirs: Sequence[str | Path], out: str | Path, *, partial: bool = False,
            plots: bool = True, at_round: int | None = None) -> dict[str, Any]:
    """Read the runs, write compare.md, compare.csv and the PNGs into ``out``; return what
    was written and the Markdown table."""
    if not run_dirs:
        raise RunDirError("give at least one run directory")
    runs = [load_run(p, partial=partial, at_round=at_round) for p in run_dirs]
    rows, leaves = make_rows(runs)
    head, body = table_rows(rows, leaves)
    notes = compute_notes(rows)
    if at_round is not None:
        notes.insert(0, f"compared after root round {at_round} (its evaluation, and tokens "
                        "and client steps up to it)")
    text = markdown(head, body)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "compare.md"
    md.write_text(text + "".join(f"\n{n}\n" for n in notes))
    write_csv(rows, leaves, out_dir / "compare.csv")
    written = [md, out_dir / "compare.csv"]
    if plots:
        from fedgroups.fl.hierarchy import plots as hplots

        written += hplots.plot_all(rows, leaves, out_dir)
    return {"table": text, "notes": notes, "files": written, "rows": rows, "leaves": leaves}


def add_compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="hierarchical runs side by side: a table and plots",
                       description="One table (method × federation perplexity, mean, "
                       "tokens, client steps, ε) printed and written as Markdown and CSV, "
                       "and PNGs: perplexity per federation, loss curves, attention weights.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (output_dir)")
    p.add_argument("--out", default="compare", help="where to write the table and PNGs "
                   "(default: ./compare)")
    p.add_argument("--partial", action="store_true", help="compare unfinished runs as they are")
    p.add_argument("--round", type=int, default=None, metavar="N", help="compare the runs as "
                   "they were after root round N (an evaluated round; they may go on)")
    p.add_argument("--no-plots", action="store_true", help="only the table")


def run_compare(args: argparse.Namespace) -> int:
    result = compare(args.runs, args.out, partial=args.partial, plots=not args.no_plots,
                     at_round=args.round)
    print(result["table"], end="")
    for note in result["notes"]:
        print(note)
    print("wrote " + ", ".join(str(p) for p in result["files"]))
    return 0
