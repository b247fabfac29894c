"""Is the meta-learning behaviour algorithm-specific?  FedAvg, FedSGD, FedProx and SCAFFOLD
under the protocol of ``meta_learning.py`` (Dataset Grouper, Charles et al. 2023, leave
this open), at CPU scale.

On the pydocs corpus with ``configs/dg-meta.yaml``, this script:

1. builds the corpus and the shared tokenizer unless they exist;
2. tunes FedAvg and FedSGD on ``meta_learning.py``'s grid (its runs are reused when they
   are in ``--runs``; ``--tuning-from`` reuses its table instead); tunes FedProx's mu at
   FedAvg's chosen rates and SCAFFOLD's client lr over FedAvg's client-lr grid at FedAvg's
   server rate -- all on the validation clients, seed 0;
3. trains the four algorithms with their chosen settings for every seed (the same client
   tokens per round: same cohorts, same rows) and personalizes every held-out client
   after the last round;
4. writes, under ``experiments/results/algorithms/``: a table per phase (before / after
   personalization, and each client's gain) with p10 / p50 / p90 as mean [min–max] over
   seeds, the per-seed numbers, the pairwise differences with whether they exceed the
   seed spread, the tuning table, and a plot.

    python experiments/algorithms.py                  # the full run
    python experiments/algorithms.py --smoke          # seconds: checks it works
    python experiments/algorithms.py --algorithms fedavg,fedsgd --smoke
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import tables
import tuning
from common import Context, Run
from tables import fmt
from tuning import Tuned

ALGORITHMS = ("fedavg", "fedsgd", "fedprox", "scaffold")
NAME = {"fedavg": "FedAvg", "fedsgd": "FedSGD", "fedprox": "FedProx", "scaffold": "SCAFFOLD"}
COLORS = {"fedavg": "tab:blue", "fedsgd": "tab:orange", "fedprox": "tab:green",
          "scaffold": "tab:red"}
MUS = {"full": (0.001, 0.01, 0.1), "smoke": (0.01,)}  # FedProx's proximal weight grid
PHASES = ("pre", "post", "gain")
QS = (10, 50, 90)
# Which differences answer the question: every local-training algorithm against FedSGD
# (the meta-learning signature), and the two drift-corrected ones against FedAvg.
PAIRS = (("fedavg", "fedsgd"), ("fedprox", "fedsgd"), ("scaffold", "fedsgd"),
         ("fedprox", "fedavg"), ("scaffold", "fedavg"))
TUNING_COLUMNS = ["algorithm", "client_lr", "server_lr", "mu", "val_loss", "train_loss",
                  "chosen", "source"]


# --- tuning ------------------------------------------------------------------------------


def _number(v: str) -> float | str:
    return v if v == "-" else float(v)


def _read_tuning(path: Path) -> list[dict[str, Any]]:
    """A tuning table written by ``tuning.tune`` (its CSV), values as numbers."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [{"algorithm": r["algorithm"], "client_lr": _number(r["client_lr"]),
             "server_lr": float(r["server_lr"]),
             "val_loss": float(r["val_loss"] or "nan"),
             "train_loss": float(r["train_loss"] or "nan")} for r in rows]


def base_tuning(ctx: Context, table: Path | None) -> list[dict[str, Any]]:
    """FedAvg's and FedSGD's tuning rows: those of ``table`` if it holds exactly this
    scale's grid and no setting was changed with --set, else the grid is run here (runs
    already trained are reused).  The table does not name its corpus: reusing it is the
    caller's claim that the corpus is the same."""
    grid = {(a, "-" if c is None else c, s) for a, c, s in tuning.tuning_runs(ctx)}
    if table is not None and table.exists():
        rows = _read_tuning(table)
        same = {(r["algorithm"], r["client_lr"], r["server_lr"]) for r in rows} == grid
        if same and not ctx.changed:
            ctx.log(f"tuning: FedAvg and FedSGD rates from {table} (same grid)")
            return [{**r, "source": _display(table)} for r in rows]
        ctx.log(f"tuning: {table} is for another grid or settings; running the grid")
    return [{**r, "source": "this run"} for r in tuning.grid_rows(ctx)]


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(common.REPO))
    except ValueError:
        return str(path)


def tune(ctx: Context, algorithms: tuple[str, ...], table: Path | None) -> dict[str, Tuned]:
    """Chosen settings per algorithm; writes ``tuning.md`` / ``tuning.csv``."""
    rows = base_tuning(ctx, table)
    best = tuning.choose(rows, ("fedavg", "fedsgd"))
    fedavg = best["fedavg"]
    extra: list[tuple[dict[str, Any], Run]] = []
    if "fedprox" in algorithms:  # mu at FedAvg's chosen rates
        for mu in MUS[ctx.scale.name]:
            t = Tuned(client_lr=fedavg.client_lr, server_lr=fedavg.server_lr,
                      params=(("mu", mu),))
            extra.append(({"algorithm": "fedprox", "client_lr": fedavg.client_lr,
                           "server_lr": fedavg.server_lr, "mu": mu},
                          tuning.tuning_run(ctx, f"fedprox-c{fedavg.client_lr:g}-"
                                            f"s{fedavg.server_lr:g}-mu{mu:g}",
                                            tuning.algorithm_overrides("fedprox", t))))
    if "scaffold" in algorithms:  # client lr over FedAvg's grid, FedAvg's server rate
        for clr in ctx.scale.client_lrs:
            t = Tuned(client_lr=clr, server_lr=fedavg.server_lr)
            extra.append(({"algorithm": "scaffold", "client_lr": clr,
                           "server_lr": fedavg.server_lr},
                          tuning.tuning_run(ctx, f"scaffold-c{clr:g}-s{fedavg.server_lr:g}",
                                            tuning.algorithm_overrides("scaffold", t))))
    if extra:
        ctx.log(f"tuning: {len(extra)} runs of {ctx.scale.tune_rounds} rounds")
    losses = tuning.validation_losses(ctx, [run for _, run in extra])
    for (row, _), (val, tr) in zip(extra, losses):
        rows.append({**row, "val_loss": val, "train_loss": tr, "source": "this run"})
    for alg in ("fedprox", "scaffold"):
        finite = [r for r in rows if r["algorithm"] == alg and math.isfinite(r["val_loss"])]
        if alg in algorithms and not finite:
            raise RuntimeError(f"tuning: every {alg} run diverged; widen the grid")
        if finite:
            b = min(finite, key=lambda r: r["val_loss"])
            params = (("mu", b["mu"]),) if "mu" in b else ()
            best[alg] = Tuned(client_lr=b["client_lr"], server_lr=b["server_lr"], params=params)
            for r in rows:
                if r["algorithm"] == alg:
                    r["chosen"] = "yes" if r is b else ""
    tables.write_table(ctx.results / "tuning", rows, TUNING_COLUMNS)
    return {alg: best[alg] for alg in algorithms}


# --- results -----------------------------------------------------------------------------


def settings(alg: str, tuned: Tuned) -> str:
    """The chosen settings, e.g. ``client lr 1, server lr 0.003, mu 0.1``."""
    parts = [] if tuned.client_lr is None or alg == "fedsgd" else [f"client lr {tuned.client_lr:g}"]
    parts.append(f"server lr {tuned.server_lr:g}")
    parts += [f"{k} {v:g}" for k, v in tuned.params]
    return ", ".join(parts)


def _gain(pers: list[dict[str, Any]], q: int) -> float:
    import numpy as np

    gains = [r["pre"] - r["post"] for r in pers]
    return float(np.percentile(gains, q)) if gains else math.nan


def per_seed(dirs: dict[tuple[str, int], Path]) -> list[dict[str, Any]]:
    """One row per (algorithm, seed): the held-out percentiles of every phase, the global
    model's held-out loss and the client tokens trained on (equal compute check)."""
    rows = []
    for (alg, seed), d in dirs.items():
        m = common.metrics(d)
        last, pers = m[-1], common.personalization(d)
        row: dict[str, Any] = {"algorithm": NAME[alg], "seed": seed, "clients": len(pers)}
        for q in QS:
            row[f"pre_p{q}"] = last[f"pers/heldout/pre_p{q}"]
            row[f"post_p{q}"] = last[f"pers/heldout/post_p{q}"]
            row[f"gain_p{q}"] = _gain(pers, q)
        row["heldout_loss"] = last.get("eval/heldout/loss", math.nan)
        row["client_tokens"] = sum(r["tokens"] for r in m)
        rows.append(row)
    return rows


def phase_tables(ctx: Context, seeds: list[dict[str, Any]],
                 tuned: dict[str, Tuned]) -> None:
    """``personalization-{pre,post,gain}``: p10 / p50 / p90 mean [min–max] over seeds."""
    for phase in PHASES:
        rows = []
        for alg, t in tuned.items():
            mine = [r for r in seeds if r["algorithm"] == NAME[alg]]
            row: dict[str, Any] = {"algorithm": NAME[alg], "settings": settings(alg, t),
                                   "seeds": len(mine)}
            for q in QS:
                vals = [r[f"{phase}_p{q}"] for r in mine]
                row[f"p{q}"] = fmt(vals)
                row[f"p{q}_mean"], row[f"p{q}_min"], row[f"p{q}_max"] = tables.spread(vals)
            if phase == "pre":
                row["heldout_loss"] = fmt([r["heldout_loss"] for r in mine])
            rows.append(row)
        columns = ["algorithm", "settings", "seeds", "p10", "p50", "p90"]
        columns += ["heldout_loss"] if phase == "pre" else []
        tables.write_table(ctx.results / f"personalization-{phase}", rows, columns,
                           [f"p{q}_{s}" for q in QS for s in ("mean", "min", "max")])


def differences(ctx: Context, seeds: list[dict[str, Any]],
                algorithms: tuple[str, ...]) -> list[dict[str, Any]]:
    """Pairwise differences (a - b) of every percentile: the difference of the means, the
    per-seed paired differences [min–max], and whether it exceeds the seed spread (the
    two algorithms' ranges over seeds do not overlap)."""
    by = {(r["algorithm"], r["seed"]): r for r in seeds}
    seed_ids = sorted({r["seed"] for r in seeds})
    rows = []
    for a, b in PAIRS:
        if a not in algorithms or b not in algorithms:
            continue
        for phase in PHASES:
            for q in QS:
                col = f"{phase}_p{q}"
                va = [by[(NAME[a], s)][col] for s in seed_ids]
                vb = [by[(NAME[b], s)][col] for s in seed_ids]
                paired = [x - y for x, y in zip(va, vb)]
                (ma, lo_a, hi_a), (mb, lo_b, hi_b) = tables.spread(va), tables.spread(vb)
                apart = hi_a < lo_b or hi_b < lo_a
                rows.append({
                    "a": NAME[a], "b": NAME[b], "metric": col, "a_minus_b": ma - mb,
                    "paired_by_seed": fmt(paired), "a_seeds": fmt(va),
                    "b_seeds": fmt(vb),
                    "same_sign_every_seed": all(p > 0 for p in paired)
                    or all(p < 0 for p in paired),
                    "verdict": "beyond seed spread" if apart else "within noise"})
    tables.write_table(ctx.results / "differences", rows,
                       ["a", "b", "metric", "a_minus_b", "paired_by_seed", "a_seeds",
                        "b_seeds", "same_sign_every_seed", "verdict"])
    return rows


def plot(ctx: Context, dirs: dict[tuple[str, int], Path], seeds: list[dict[str, Any]],
         tuned: dict[str, Tuned]) -> None:
    """Pre / post percentiles and per-client gain per algorithm (mean, min–max over seeds
    as error bars), and the global model's held-out loss along the rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    algorithms = tuple(tuned)
    n = len(ctx.scale.seeds)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.4))
    markers = dict(zip(QS, ("v", "o", "^")))
    for i, alg in enumerate(algorithms):
        mine = [r for r in seeds if r["algorithm"] == NAME[alg]]
        for ax, phase, dx, filled in ((axes[0], "pre", -0.18, False),
                                      (axes[0], "post", 0.18, True),
                                      (axes[1], "gain", 0.0, True)):
            for q, qx in zip(QS, (-0.05, 0.0, 0.05)):  # side by side: bars stay apart
                m, lo, hi = tables.spread([r[f"{phase}_p{q}"] for r in mine])
                ax.errorbar([i + dx + qx], [m], yerr=[[m - lo], [hi - m]], fmt=markers[q],
                            color=COLORS[alg], capsize=3,
                            markerfacecolor=COLORS[alg] if filled else "white")
        curves = []
        for s in ctx.scale.seeds:
            rows = [r for r in common.metrics(dirs[(alg, s)]) if "eval/heldout/loss" in r]
            curves.append([(r["round"], r["eval/heldout/loss"]) for r in rows])
        x = [p[0] for p in curves[0]]
        y = np.array([[p[1] for p in c] for c in curves])
        axes[2].plot(x, y.mean(0), "o-", color=COLORS[alg], label=NAME[alg])
        axes[2].fill_between(x, y.min(0), y.max(0), color=COLORS[alg], alpha=0.2)
    names = [f"{NAME[a]}\n" + settings(a, tuned[a]).replace(", server", "\nserver")
             for a in algorithms]
    for ax in axes[:2]:
        ax.set_xticks(range(len(algorithms)), names)
    for q in QS:  # legend of the percentile markers
        axes[0].plot([], [], markers[q], color="gray", label=f"p{q}")
    axes[0].plot([], [], "s", color="gray", markerfacecolor="white", label="pre (left, open)")
    axes[0].plot([], [], "s", color="gray", label="post (right, filled)")
    axes[0].legend(fontsize=8)
    axes[0].set(ylabel="held-out client loss (nats/token)",
                title=f"Before / after personalization: p10, p50, p90\n"
                f"(mean, bars min–max over {n} seeds)")
    axes[1].set(ylabel="per-client gain, pre − post (nats/token)",
                title=f"Gain from personalization: p10, p50, p90\n"
                f"(mean, bars min–max over {n} seeds)")
    axes[2].set(xlabel="round", ylabel="held-out loss (token-weighted)",
                title=f"Global model on held-out clients\n(mean, min–max over {n} seeds)")
    axes[2].legend()
    tables.save_figure(fig, ctx.results / "algorithms.png")


# --- main --------------------------------------------------------------------------------


def _algorithms(text: str) -> tuple[str, ...]:
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown algorithm(s) {unknown}; choose from {','.join(ALGORITHMS)}")
    return tuple(a for a in ALGORITHMS if a in names)  # the report's order


def _client_lr(text: str) -> tuple[str, float]:
    alg, _, lr = text.partition("=")
    if alg not in ALGORITHMS or alg == "fedsgd":
        raise argparse.ArgumentTypeError(f"--client-lr {text}: give ALG=LR with ALG one of "
                                         "fedavg, fedprox, scaffold")
    try:
        return alg, float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--client-lr {text}: LR must be a number") from None


def final_runs(ctx: Context, tuned: dict[str, Tuned],
               fixed: dict[str, float]) -> dict[tuple[str, int], Run]:
    """The reported runs; those of an algorithm in ``fixed`` (its client lr set by hand,
    not tuned) are named with the rate, so the tuned runs stay."""
    runs = {}
    for alg, t in tuned.items():
        for seed in ctx.scale.seeds:
            run = tuning.final_run(ctx, alg, t, seed, "constant")
            if alg in fixed:
                run = Run(f"{run.name}-c{fixed[alg]:g}", run.overrides)
            runs[(alg, seed)] = run
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_arguments(parser)
    parser.add_argument("--algorithms", type=_algorithms, default=ALGORITHMS,
                        help=f"comma-separated subset of {','.join(ALGORITHMS)} (default all)")
    parser.add_argument("--tuning-from", type=Path, default=None, metavar="TUNING_CSV",
                        help="reuse FedAvg's and FedSGD's rates from this tuning table of "
                        "meta_learning.py (same grid; made on the same corpus: the corpus is "
                        "the installed environment, so check `fedgroups info`); default: run "
                        "the grid (runs meta_learning.py trained in --runs are reused)")
    parser.add_argument("--client-lr", type=_client_lr, action="append", default=[],
                        metavar="ALG=LR",
                        help="train ALG's reported runs at this client lr instead of its tuned "
                        "one (a sensitivity check outside the protocol; use another --results)")
    args = parser.parse_args(argv)
    ctx = common.context(args, "algorithms")
    algorithms: tuple[str, ...] = args.algorithms
    common.ensure_corpus(ctx)
    common.ensure_tokenizer(ctx)
    tuned = tune(ctx, algorithms, args.tuning_from)
    ctx.log(f"chosen: {tuned}")
    fixed = dict(args.client_lr)
    for alg, lr in fixed.items():
        if alg in tuned:
            ctx.log(f"{alg}: client lr fixed at {lr:g} (tuned: {tuned[alg].client_lr:g})")
            tuned[alg] = Tuned(client_lr=lr, server_lr=tuned[alg].server_lr,
                               params=tuned[alg].params)
    runs = final_runs(ctx, tuned, fixed)
    ctx.log(f"training: {len(runs)} runs of {ctx.scale.rounds} rounds (cached ones reused)")
    dirs = dict(zip(runs, common.train_all(ctx, list(runs.values()))))
    seeds = per_seed(dirs)
    tables.write_table(ctx.results / "seeds", seeds, list(seeds[0]))
    phase_tables(ctx, seeds, tuned)
    differences(ctx, seeds, algorithms)
    plot(ctx, dirs, seeds, tuned)
    for name in ("tuning", "personalization-pre", "personalization-post",
                 "personalization-gain", "differences"):
        print(f"## {name}\n" + (ctx.results / f"{name}.md").read_text())
    print(f"tables and plot: {ctx.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
