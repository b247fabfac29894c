"""Finished hierarchical runs read back and summarised per method (what ``fedgroups compare``
tabulates and ``plots.py`` draws): each run directory through ``records`` (the run-output
contract, docs/hierarchy.md); runs of one method (seeds) make one :class:`Row` whose numbers
are :class:`Cell` s, a mean with the min–max over runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedgroups.errors import FedGroupsError
from fedgroups.fl.hierarchy import records as rec


class RunDirError(FedGroupsError):
    """A run directory that ``fedgroups compare`` cannot read: missing, not a hierarchical
    run, or not finished."""


@dataclass(frozen=True)
class Run:
    """What compare needs from one run directory."""

    path: Path
    method: str
    seed: int | None
    summary: rec.RunSummary
    evals: list[rec.EvalRecord]  # every evaluation, in file order
    metrics: list[rec.NodeRoundRecord]
    attention: list[rec.AttentionRecord]
    leaves: list[str]  # leaf federation paths, tree order
    finished: bool
    rounds_planned: int | None
    tokens: int  # training tokens and client steps up to the compared round
    steps: int

    def last_eval(self) -> dict[str, rec.EvalRecord]:
        """federation -> its record at the last evaluated round (MEAN_FEDERATION included)."""
        last = max(r.round for r in self.evals)
        return {r.federation: r for r in self.evals if r.round == last}


def load_run(path: str | Path, *, partial: bool = False, at_round: int | None = None) -> Run:
    """Read one run directory; RunDirError says what is missing and what to do.

    ``at_round`` (root rounds done, from 1) compares the runs as they were after that round:
    its evaluation, and tokens and steps up to it; the run may go on beyond it.
    """
    run_dir = Path(path)
    if not run_dir.exists():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory (give the run's output_dir)")
    if not rec.is_hierarchical_run(run_dir):
        raise RunDirError(f"{run_dir}: no {rec.TREE_FILE}; not a hierarchical run (compare "
                          "reads runs of `fedgroups train` with a `hierarchy:` section), or "
                          "one that has not started")
    if not (run_dir / rec.SUMMARY_FILE).is_file():
        raise RunDirError(f"{run_dir}: no {rec.SUMMARY_FILE} yet: the run has not finished "
                          "a round; wait for it, or resume it with `fedgroups train`")
    try:
        summary = rec.read_summary(run_dir)
        evals = rec.read_eval(run_dir)
        metrics = rec.read_metrics(run_dir)
        attention = rec.read_attention(run_dir)
        tree = rec.read_tree(run_dir)
        config = rec.read_config(run_dir) if (run_dir / "config.yaml").is_file() else {}
    except (ValueError, KeyError, TypeError) as e:  # json, missing fields
        raise RunDirError(f"{run_dir}: cannot read its run records ({type(e).__name__}: "
                          f"{e}); was it written by another version of fedgroups?") from e
    if not evals:
        raise RunDirError(f"{run_dir}: no evaluation in {rec.EVAL_FILE} yet (the run "
                          f"has done {summary.rounds} round(s)); wait for the first "
                          "evaluation (eval.every), or resume the run")
    planned = config.get("rounds")
    finished = planned is None or summary.rounds >= int(planned)
    tokens, steps = summary.tokens, summary.steps
    if at_round is not None:
        evals, metrics, attention, finished, tokens, steps = _up_to(
            run_dir, at_round, summary.rounds, evals, metrics, attention)
    if not finished and not partial:
        raise RunDirError(f"{run_dir}: unfinished, {summary.rounds} of {planned} rounds done; "
                          "resume it with `fedgroups train` (same config), or pass --partial "
                          "to compare it as it is")
    leaves = [r.federation for r in evals if r.federation != rec.MEAN_FEDERATION]
    if not leaves:
        leaves = [n.path for n in tree if n.kind == "leaf"]
    seed = config.get("seed")
    return Run(path=run_dir, method=summary.method, seed=None if seed is None else int(seed),
               summary=summary, evals=evals, metrics=metrics, attention=attention,
               leaves=list(dict.fromkeys(leaves)), finished=finished,
               rounds_planned=None if planned is None else int(planned), tokens=tokens,
               steps=steps)


def _up_to(run_dir: Path, at_round: int, done: int, evals: list[rec.EvalRecord],
           metrics: list[rec.NodeRoundRecord], attention: list[rec.AttentionRecord],
           ) -> tuple[list, list, list, bool, int, int]:
    """The records of the first ``at_round`` root rounds, and tokens and steps up to it."""
    if at_round < 1:
        raise RunDirError(f"--round must be >= 1; got {at_round}")
    if done < at_round:
        raise RunDirError(f"{run_dir}: has done {done} round(s), fewer than --round {at_round}")
    last = at_round - 1
    evaluated = sorted({r.round + 1 for r in evals})
    if at_round not in evaluated:
        raise RunDirError(f"{run_dir}: no evaluation after round {at_round}; it evaluated "
                          f"after rounds {evaluated} (eval.every)")
    root = [m for m in metrics if m.level == 0 and m.round == last]
    if not root:
        raise RunDirError(f"{run_dir}: {rec.METRICS_FILE} has no root row for round "
                          f"{at_round}")
    return ([r for r in evals if r.round <= last], [m for m in metrics if m.round <= last],
            [a for a in attention if a.round <= last], True, root[0].cum_tokens,
            root[0].cum_steps)


@dataclass(frozen=True)
class Cell:
    """A number over the runs of one method: mean, min, max (all equal for one run)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Cell | None:
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not vals:
            return None
        return cls(sum(vals) / len(vals), min(vals), max(vals), len(vals))

    def text(self, digits: int = 2) -> str:
        if self.n == 1 or self.low == self.high:
            return _num(self.mean, digits)
        return f"{_num(self.mean, digits)} [{_num(self.low, digits)}–{_num(self.high, digits)}]"


def _num(x: float, digits: int) -> str:
    return f"{x:,.{digits}f}"


@dataclass(frozen=True)
class Row:
    method: str
    runs: list[Run]
    ppl: dict[str, Cell | None]  # leaf federation -> perplexity
    mean_ppl: Cell | None
    mean_loss: Cell | None
    tokens: Cell | None
    steps: Cell | None
    epsilon: Cell | None  # the largest ε over leaves; None without DP


def short_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def make_rows(runs: Sequence[Run]) -> tuple[list[Row], list[str]]:
    """One row per method (in the order first given) and the leaf federations (columns)."""
    leaves: list[str] = list(dict.fromkeys(leaf for run in runs for leaf in run.leaves))
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    rows = []
    for method, group in by_method.items():
        last = [run.last_eval() for run in group]
        eps = [max((r.dp_epsilon for r in ev.values() if r.dp_epsilon is not None),
                   default=None) for ev in last]
        mean = [ev.get(rec.MEAN_FEDERATION) for ev in last]
        rows.append(Row(
            method=method, runs=group,
            ppl={leaf: Cell.of([ev[leaf].ppl if leaf in ev else None for ev in last])
                 for leaf in leaves},
            mean_ppl=Cell.of([m.ppl if m else run.summary.eval_ppl
                              for m, run in zip(mean, group)]),
            mean_loss=Cell.of([m.loss if m else run.summary.eval_loss
                               for m, run in zip(mean, group)]),
            tokens=Cell.of([run.tokens for run in group]),
            steps=Cell.of([run.steps for run in group]),
            epsilon=Cell.of(eps)))
    return rows, leaves
