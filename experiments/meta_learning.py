"""FedAvg as a meta-learner (Dataset Grouper, Charles et al. 2023, Table 5), at CPU scale.

Claim: before personalization FedSGD's global model has the lower loss on held-out
clients; after each held-out client fine-tunes a copy on its own data, FedAvg's is far
lower.  This script, on the pydocs corpus (docstrings of the installed distributions,
one client per Python package):

1. builds the corpus (``fedgroups build --recipe pydocs``) unless it exists;
2. tunes the learning rates on the validation clients (FedAvg: client SGD lr × server
   Adam lr; FedSGD: server Adam lr), seed 0;
3. trains both algorithms with their chosen rates for every seed, with the same client
   tokens per round, and personalizes on every held-out client after the last round;
4. writes tables (Markdown + CSV) and plots under ``experiments/results/meta_learning/``.

    python experiments/meta_learning.py                  # the full run (< 30 min, 2 cores)
    python experiments/meta_learning.py --smoke          # seconds: checks it works
    python experiments/meta_learning.py --set model.preset=100m --set run.device=cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import tables
import tuning
from common import ALGORITHMS, Context, Run
from tables import fmt

# Dataset Grouper, Table 5: FedC4 validation loss across clients (p10 / p50 / p90).
PAPER = {
    ("fedavg", "pre"): (5.13, 5.64, 6.27), ("fedavg", "post"): (0.002, 0.012, 0.934),
    ("fedsgd", "pre"): (4.38, 4.93, 5.40), ("fedsgd", "post"): (1.25, 3.38, 4.53),
}
NAME = {"fedavg": "FedAvg", "fedsgd": "FedSGD"}


def final_runs(ctx: Context, tuned: dict[str, tuning.Tuned],
               schedule: str) -> dict[tuple[str, int], Run]:
    return {(alg, seed): tuning.final_run(ctx, alg, tuned[alg], seed, schedule)
            for alg in ALGORITHMS for seed in ctx.scale.seeds}


def summarize(ctx: Context, dirs: dict[tuple[str, int], Path],
              tuned: dict[str, tuning.Tuned]) -> dict[str, object]:
    seeds = ctx.scale.seeds
    last = {k: common.metrics(d)[-1] for k, d in dirs.items()}
    rows = []
    for alg in ALGORITHMS:
        for phase in ("pre", "post"):
            row: dict[str, object] = {"algorithm": NAME[alg], "phase": phase}
            for q, paper in zip((10, 50, 90), PAPER[(alg, phase)]):
                vals = [last[(alg, s)][f"pers/heldout/{phase}_p{q}"] for s in seeds]
                row[f"p{q}"] = fmt(vals)
                row[f"p{q}_mean"] = tables.spread(vals)[0]
                row[f"paper_p{q}"] = paper
            rows.append(row)
    for alg in ALGORITHMS:  # per client: how much fine-tuning lowered its loss
        row = {"algorithm": NAME[alg], "phase": "gain (pre - post)"}
        for i, q in enumerate((10, 50, 90)):
            vals = [_gain_percentile(common.personalization(dirs[(alg, s)]), q) for s in seeds]
            row[f"p{q}"] = fmt(vals)
            row[f"p{q}_mean"] = tables.spread(vals)[0]
            # the paper reports pre and post percentiles only: this is their difference
            row[f"paper_p{q}"] = round(PAPER[(alg, "pre")][i] - PAPER[(alg, "post")][i], 3)
        rows.append(row)
    tables.write_table(ctx.results / "personalization", rows,
                       ["algorithm", "phase", "p10", "p50", "p90",
                        "paper_p10", "paper_p50", "paper_p90"])

    # Orderings per seed, and per held-out client (paired: same client, same seed).
    checks = []
    for s in seeds:
        pers = {alg: {r["key"]: r for r in common.personalization(dirs[(alg, s)])}
                for alg in ALGORITHMS}
        keys = sorted(set(pers["fedavg"]) & set(pers["fedsgd"]))
        m = {alg: last[(alg, s)] for alg in ALGORITHMS}
        tokens = {alg: sum(r["tokens"] for r in common.metrics(dirs[(alg, s)]))
                  for alg in ALGORITHMS}
        checks.append({
            "seed": s, "clients": len(keys),
            "pre_p50_fedsgd_lower": m["fedsgd"]["pers/heldout/pre_p50"]
            < m["fedavg"]["pers/heldout/pre_p50"],
            "post_p50_fedavg_lower": m["fedavg"]["pers/heldout/post_p50"]
            < m["fedsgd"]["pers/heldout/post_p50"],
            "clients_pre_fedsgd_lower": _share(pers, keys, "pre", "fedsgd", "fedavg"),
            "clients_post_fedavg_lower": _share(pers, keys, "post", "fedavg", "fedsgd"),
            "heldout_loss_fedavg": m["fedavg"]["eval/heldout/loss"],
            "heldout_loss_fedsgd": m["fedsgd"]["eval/heldout/loss"],
            "client_tokens_fedavg": tokens["fedavg"], "client_tokens_fedsgd": tokens["fedsgd"],
        })
    tables.write_table(ctx.results / "orderings", checks, list(checks[0]))
    _plot(ctx, dirs)
    return {"tuned": tuned, "rows": rows, "checks": checks}


def _gain_percentile(pers: list[dict], q: int) -> float:
    import numpy as np

    gains = [r["pre"] - r["post"] for r in pers]
    return float(np.percentile(gains, q)) if gains else float("nan")


def _share(pers: dict[str, dict[str, dict]], keys: list[str], phase: str, better: str,
           worse: str) -> float:
    """Fraction of held-out clients on which ``better`` has the lower ``phase`` loss."""
    wins = sum(pers[better][k][phase] < pers[worse][k][phase] for k in keys)
    return wins / len(keys) if keys else float("nan")


def _plot(ctx: Context, dirs: dict[tuple[str, int], Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"fedavg": "tab:blue", "fedsgd": "tab:orange"}
    for alg in ALGORITHMS:
        for phase, style in (("pre", "--"), ("post", "-")):
            vals = np.sort([r[phase] for s in ctx.scale.seeds
                            for r in common.personalization(dirs[(alg, s)])])
            if len(vals):
                ax1.plot(vals, np.arange(1, len(vals) + 1) / len(vals), style,
                         color=colors[alg], label=f"{NAME[alg]} {phase}")
        curves = []
        for s in ctx.scale.seeds:
            rows = [r for r in common.metrics(dirs[(alg, s)]) if "eval/heldout/loss" in r]
            curves.append([(r["round"], r["eval/heldout/loss"]) for r in rows])  # rounds done
        x = [p[0] for p in curves[0]]
        y = np.array([[p[1] for p in c] for c in curves])
        ax2.plot(x, y.mean(0), color=colors[alg], label=NAME[alg])
        ax2.fill_between(x, y.min(0), y.max(0), color=colors[alg], alpha=0.2)
    ax1.set(xlabel="held-out client loss (nats/token)", ylabel="fraction of clients",
            title="Held-out clients before / after personalization (all seeds)")
    ax1.legend()
    ax2.set(xlabel="round", ylabel="held-out loss (token-weighted)",
            title=f"Global model on held-out clients (mean, min–max over {len(ctx.scale.seeds)} seeds)")
    ax2.legend()
    tables.save_figure(fig, ctx.results / "meta_learning.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_arguments(parser)
    parser.add_argument("--schedule", choices=tuning.SCHEDULES, default="constant",
                        help="server schedule of the compared runs (default constant; the "
                        "others are the runs of schedules.py)")
    args = parser.parse_args(argv)
    suffix = "" if args.schedule == "constant" else f"-{args.schedule}"
    ctx = common.context(args, "meta_learning" + suffix)
    common.ensure_corpus(ctx)
    common.ensure_tokenizer(ctx)
    tuned = tuning.tune(ctx)
    ctx.log(f"chosen: {tuned}")
    runs = final_runs(ctx, tuned, args.schedule)
    ctx.log(f"training: {len(runs)} runs of {ctx.scale.rounds} rounds")
    dirs = dict(zip(runs, common.train_all(ctx, list(runs.values()))))
    out = summarize(ctx, dirs, tuned)
    print((ctx.results / "personalization.md").read_text())
    print((ctx.results / "orderings.md").read_text())
    print(f"tables and plots: {ctx.results}")
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
