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
from common import ALGORITHMS, SCHEDULES, Context, fmt

NAME = {"fedavg": "FedAvg", "fedsgd": "FedSGD"}
LOSS = "eval/heldout/loss"


def curves(run_dir: Path) -> tuple[list[int], list[float]]:
    rows = [r for r in common.metrics(run_dir) if LOSS in r]
    return [r["round"] + 1 for r in rows], [r[LOSS] for r in rows]


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
                "heldout_loss_mean": common.spread(finals[sched])[0],
                "pre_p50": fmt([m["pers/heldout/pre_p50"] for m in last]),
                "post_p50": fmt([m["pers/heldout/post_p50"] for m in last]),
            })
        means = [common.spread(v)[0] for v in finals.values()]
        seed_spread = max(common.spread(v)[2] - common.spread(v)[1] for v in finals.values())
        rows.append({"algorithm": NAME[alg], "schedule": "(max - min over schedules)",
                     "heldout_loss": f"{max(means) - min(means):.3f} "
                     f"(largest seed range {seed_spread:.3f})",
                     "heldout_loss_mean": max(means) - min(means)})
    common.write_table(ctx.results / "schedules", rows,
                       ["algorithm", "schedule", "heldout_loss", "pre_p50", "post_p50"])
    _plot(ctx, dirs)
    return rows


def _plot(ctx: Context, dirs: dict[tuple[str, str, int], Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = dict(zip(SCHEDULES, ("tab:blue", "tab:green", "tab:red")))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    lo, hi = np.inf, -np.inf
    for ax, alg in zip(axes, ALGORITHMS):
        for sched in SCHEDULES:
            cs = [curves(dirs[(alg, sched, s)]) for s in ctx.scale.seeds]
            x, y = cs[0][0], np.array([c[1] for c in cs])
            ax.plot(x, y.mean(0), color=colors[sched], label=sched)
            ax.fill_between(x, y.min(0), y.max(0), color=colors[sched], alpha=0.2)
            lo, hi = min(lo, y.min()), max(hi, y[:, len(x) // 4:].max())
        ax.set(xlabel="round", ylabel="held-out loss (token-weighted)",
               title=f"{NAME[alg]}: mean, min–max over {len(ctx.scale.seeds)} seeds")
        ax.legend()
    for ax in axes[:2]:
        ax.set_ylim(lo - 0.05, hi + 0.05)  # same scale; the first rounds are cut off
    for sched in SCHEDULES:
        lrs = [r["server_lr"] for r in common.metrics(dirs[("fedsgd", sched, ctx.scale.seeds[0])])]
        axes[2].plot(range(1, len(lrs) + 1), [v / max(lrs) for v in lrs], color=colors[sched],
                     label=sched)
    axes[2].set(xlabel="round", ylabel="server lr / peak lr", title="server schedules")
    axes[2].legend()
    fig.tight_layout()
    ctx.results.mkdir(parents=True, exist_ok=True)
    fig.savefig(ctx.results / "schedules.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_arguments(parser)
    args = parser.parse_args(argv)
    ctx = common.context(args, "schedules")
    common.ensure_corpus(ctx)
    common.ensure_tokenizer(ctx)
    tuned = common.tune(ctx)
    ctx.log(f"chosen: {tuned}")
    keys = [(alg, sched, seed) for sched in SCHEDULES for alg in ALGORITHMS
            for seed in ctx.scale.seeds]
    runs = [common.final_run(ctx, alg, tuned[alg], seed, sched) for alg, sched, seed in keys]
    ctx.log(f"training: {len(runs)} runs of {ctx.scale.rounds} rounds (cached ones reused)")
    dirs = dict(zip(keys, common.train_all(ctx, runs)))
    summarize(ctx, dirs)
    print((ctx.results / "schedules.md").read_text())
    print(f"tables and plots: {ctx.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
