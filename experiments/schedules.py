"""FedAvg is robust to the server learning-rate schedule, FedSGD is not (Dataset Grouper,
Charles et al. 2023), at CPU scale.

Both algorithms, with the learning rates tuned on the validation clients for the constant
schedule (the same tuning as ``meta_learning.py``, shared through the run cache), are
trained under three server schedules with the same peak rate: constant, linear warmup +
cosine decay, linear warmup + exponential decay.  For every seed the held-out loss is
recorded along the rounds; the table gives the final held-out loss per schedule (mean
[min–max] over seeds) and, per algorithm, how far apart the schedules end (the
sensitivity).  Outputs go to ``experiments/results/schedules/``.

    python experiments/schedules.py                  # the full run (< 30 min, 2 cores)
    python experiments/schedules.py --smoke          # seconds: checks it works
    python experiments/schedules.py --set model.preset=100m --set run.device=cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import tables
import tuning
from common import ALGORITHMS, Context
from tables import fmt
from tuning import SCHEDULES

NAME = {"fedavg": "FedAvg", "fedsgd": "FedSGD"}
LOSS = "eval/heldout/loss"


def curves(run_dir: Path) -> tuple[list[int], list[float]]:
    rows = [r for r in common.metrics(run_dir) if LOSS in r]
    return [r["round"] for r in rows], [r[LOSS] for r in rows]  # round = rounds done


def summarize(ctx: Context, dirs: dict[tuple[str, str, int], Path]) -> list[dict[str, object]]:
    seeds = ctx.scale.seeds
    rows: list[dict[str, object]] = []
    for alg in ALGORITHMS:
        finals = {}
        for sched in SCHEDULES:
            last = [common.metrics(dirs[(alg, sched, s)])[-1] for s in seeds]
            finals[sched] = [m[LOSS] for m in last]
            rows.append({
                "algorithm": NAME[alg], "schedule": sched,
                "heldout_loss": fmt(finals[sched]),
                "heldout_loss_mean": tables.spread(finals[sched])[0],
                "pre_p50": fmt([m["pers/heldout/pre_p50"] for m in last]),
                "post_p50": fmt([m["pers/heldout/post_p50"] for m in last]),
            })
        means = [tables.spread(v)[0] for v in finals.values()]
        seed_spread = max(tables.spread(v)[2] - tables.spread(v)[1] for v in finals.values())
        rows.append({"algorithm": NAME[alg], "schedule": "(max - min over schedules)",
                     "heldout_loss": f"{max(means) - min(means):.3f} "
                     f"(largest seed range {seed_spread:.3f})",
                     "heldout_loss_mean": max(means) - min(means)})
    tables.write_table(ctx.results / "schedules", rows,
                       ["algorithm", "schedule", "heldout_loss", "pre_p50", "post_p50"])
    _plot(ctx, dirs)
    return rows


def _plot(ctx: Context, dirs: dict[tuple[str, str, int], Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = dict(zip(SCHEDULES, ("tab:blue", "tab:green", "tab:red")))
    seeds = ctx.scale.seeds
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for col, alg in enumerate(ALGORITHMS):
        for sched in SCHEDULES:
            runs = [dirs[(alg, sched, s)] for s in seeds]
            cs = [curves(d) for d in runs]
            x, y = cs[0][0], np.array([c[1] for c in cs])
            ax = axes[0, col]
            ax.plot(x, y.mean(0), "o-", color=colors[sched], label=sched)
            ax.fill_between(x, y.min(0), y.max(0), color=colors[sched], alpha=0.2)
            # training loss of the cohort, every round (moving average over 5 rounds)
            t = np.array([[r["train_loss"] for r in common.metrics(d)] for d in runs])
            k = min(5, t.shape[1])
            smooth = np.array([np.convolve(row, np.ones(k) / k, mode="valid") for row in t])
            xs = np.arange(k, t.shape[1] + 1)
            ax = axes[1, col]
            ax.plot(xs, smooth.mean(0), color=colors[sched], label=sched)
            ax.fill_between(xs, smooth.min(0), smooth.max(0), color=colors[sched], alpha=0.2)
        axes[0, col].set(xlabel="round", ylabel="held-out loss (token-weighted)",
                         title=f"{NAME[alg]}: held-out clients, mean and min–max "
                         f"over {len(seeds)} seeds")
        axes[1, col].set(xlabel="round", ylabel="cohort training loss (5-round mean)",
                         title=f"{NAME[alg]}: training loss")
        axes[0, col].legend()
        axes[1, col].legend()
    for sched in SCHEDULES:
        lrs = [r["server_lr"] for r in common.metrics(dirs[("fedsgd", sched, seeds[0])])]
        axes[0, 2].plot(range(1, len(lrs) + 1), [v / max(lrs) for v in lrs],
                        color=colors[sched], label=sched)
    axes[0, 2].set(xlabel="round", ylabel="server lr / peak lr", title="server schedules")
    axes[0, 2].legend()
    axes[1, 2].axis("off")
    tables.save_figure(fig, ctx.results / "schedules.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_arguments(parser)
    args = parser.parse_args(argv)
    ctx = common.context(args, "schedules")
    common.ensure_corpus(ctx)
    common.ensure_tokenizer(ctx)
    tuned = tuning.tune(ctx)
    ctx.log(f"chosen: {tuned}")
    # The constant-schedule runs last: meta_learning.py trains the same ones.
    keys = [(alg, sched, seed) for sched in (*SCHEDULES[1:], SCHEDULES[0])
            for alg in ALGORITHMS for seed in ctx.scale.seeds]
    runs = [tuning.final_run(ctx, alg, tuned[alg], seed, sched) for alg, sched, seed in keys]
    ctx.log(f"training: {len(runs)} runs of {ctx.scale.rounds} rounds (cached ones reused)")
    dirs = dict(zip(keys, common.train_all(ctx, runs)))
    summarize(ctx, dirs)
    print((ctx.results / "schedules.md").read_text())
    print(f"tables and plots: {ctx.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
