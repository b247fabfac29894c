"""Learning-rate tuning on the validation clients and the settings of the final runs
(schedules, algorithm settings), shared by the experiment scripts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common import ALGORITHMS, Context, Run, metrics, train_all
from tables import write_table

# --- tuning ------------------------------------------------------------------------------


def tuning_run(ctx: Context, name: str, overrides: Sequence[str]) -> Run:
    """A tuning run: seed 0, ``tune_rounds`` rounds, evaluated once at the end on the
    *validation* clients (never the held-out ones), no personalization."""
    s = ctx.scale
    return Run(f"tune/{name}",
               (f"rounds={s.tune_rounds}", "eval.datasets.0.use_split=val",
                "eval.datasets.0.name=val", "personalization.enabled=false", "seed=0",
                f"eval.every={s.tune_rounds}", *overrides))


def tuning_runs(ctx: Context) -> dict[tuple[str, float | None, float], Run]:
    """The grid: FedAvg over (client lr, server lr), FedSGD over server lr; seed 0,
    evaluated on the validation clients, no personalization."""
    s = ctx.scale
    grid: dict[tuple[str, float | None, float], Run] = {}
    for slr in s.server_lrs:
        for clr in s.client_lrs:
            grid[("fedavg", clr, slr)] = tuning_run(
                ctx, f"fedavg-c{clr:g}-s{slr:g}",
                ("algorithm.name=fedavg", f"client.lr={clr}", f"server.lr={slr}"))
    for slr in s.fedsgd_server_lrs:
        grid[("fedsgd", None, slr)] = tuning_run(
            ctx, f"fedsgd-s{slr:g}",
            ("algorithm.name=fedsgd", "client.local_epochs=null", f"server.lr={slr}"))
    return grid


@dataclass(frozen=True)
class Tuned:
    client_lr: float | None
    server_lr: float
    params: tuple[tuple[str, float], ...] = ()  # algorithm settings, e.g. (("mu", 0.01),)


def validation_losses(ctx: Context, runs: Sequence[Run]) -> list[tuple[float, float]]:
    """Train ``runs`` (tuning runs); (validation loss, training loss) after the last round
    of each (NaN where a run diverged)."""
    out = []
    for d in train_all(ctx, runs):
        last = metrics(d)[-1]
        out.append((last.get("eval/val/loss", math.nan), last.get("train_loss", math.nan)))
    return out


def grid_rows(ctx: Context) -> list[dict[str, Any]]:
    """Run the FedAvg / FedSGD grid; one row per run (``client_lr`` "-" for FedSGD)."""
    grid = tuning_runs(ctx)
    ctx.log(f"tuning: {len(grid)} runs of {ctx.scale.tune_rounds} rounds")
    rows = []
    for (alg, clr, slr), (val, tr) in zip(grid, validation_losses(ctx, list(grid.values()))):
        rows.append({"algorithm": alg, "client_lr": "-" if clr is None else clr,
                     "server_lr": slr, "val_loss": val, "train_loss": tr})
    return rows


def choose(rows: list[dict[str, Any]], algorithms: Sequence[str]) -> dict[str, Tuned]:
    """Per algorithm, the rates of the row with the lowest validation loss; marks it
    ``chosen`` in ``rows``."""
    best: dict[str, Tuned] = {}
    for alg in algorithms:
        finite = [r for r in rows if r["algorithm"] == alg and math.isfinite(r["val_loss"])]
        if not finite:
            raise RuntimeError(f"tuning: every {alg} run diverged; widen the grid")
        b = min(finite, key=lambda r: r["val_loss"])
        best[alg] = Tuned(client_lr=None if b["client_lr"] == "-" else float(b["client_lr"]),
                          server_lr=float(b["server_lr"]))
    for r in rows:
        t = best.get(r["algorithm"])
        r["chosen"] = "yes" if t is not None and (r["server_lr"] == t.server_lr and (
            r["client_lr"] == "-" or r["client_lr"] == t.client_lr)) else ""
    return best


def tune(ctx: Context) -> dict[str, Tuned]:
    """Run the grid and pick, per algorithm, the lowest validation loss after the last
    round; write the grid to ``tuning.md`` / ``tuning.csv``."""
    rows = grid_rows(ctx)
    best = choose(rows, ALGORITHMS)
    write_table(ctx.results / "tuning", rows, ["algorithm", "client_lr", "server_lr",
                                               "val_loss", "train_loss", "chosen"])
    return best


SCHEDULES = ("constant", "warmup_cosine", "warmup_exponential")


def schedule_overrides(name: str, rounds: int) -> tuple[str, ...]:
    """The paper's three server schedules: constant; linear warmup over 10% of the rounds,
    then cosine decay to 0 or exponential decay to 0.1x at the last round."""
    if name == "constant":
        return ("server.schedule={name: constant}",)
    warmup = max(1, rounds // 10)
    if name == "warmup_cosine":
        return (f"server.schedule={{name: warmup_cosine, warmup_rounds: {warmup}, "
                "min_lr_ratio: 0.0}",)
    rate = 0.1 ** (1 / max(1, rounds - warmup - 1))
    return (f"server.schedule={{name: warmup_exponential, warmup_rounds: {warmup}, "
            f"decay_rate: {rate:.6f}}}",)


def final_run(ctx: Context, alg: str, tuned: Tuned, seed: int, schedule: str) -> Run:
    """A reported run: chosen rates, ``seed``, evaluated on the held-out (test) clients
    every ``eval_every`` rounds and personalized after the last round.  Both scripts build
    the constant-schedule runs the same way, so they share them."""
    rounds = ctx.scale.rounds
    return Run(f"final/{alg}-{schedule}-seed{seed}",
               (*algorithm_overrides(alg, tuned), *schedule_overrides(schedule, rounds),
                f"seed={seed}", f"rounds={rounds}"))


def algorithm_overrides(alg: str, tuned: Tuned) -> tuple[str, ...]:
    out = [f"algorithm.name={alg}", f"server.lr={tuned.server_lr}"]
    if alg == "fedsgd":
        out.append("client.local_epochs=null")
    else:
        out.append(f"client.lr={tuned.client_lr}")
    out += [f"algorithm.{k}={v}" for k, v in tuned.params]
    return tuple(out)
