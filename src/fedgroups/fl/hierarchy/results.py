"""Finished runs read back and summarised per method (what ``fedgroups compare`` tabulates
and ``plots.py`` draws).

A hierarchical run is read through ``records`` (the run-output contract, docs/hierarchy.md).
A flat run (``fedgroups train`` without ``hierarchy:``) is read from its ``metrics.jsonl``
and ``personalization.jsonl`` and put in the same records: one root row per round, one
evaluation row per eval dataset (standing in for a leaf federation) plus the mean row.
Runs of one method (seeds) make one :class:`Row` whose numbers are :class:`Cell` s, a mean
with the min–max over runs.

Rounds are counted as everywhere in fedgroups: a record's ``round`` is the number of
rounds completed (the record written after the first round has round 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedgroups.errors import FedGroupsError
from fedgroups.fl.hierarchy import records as rec

CONFIG_FILE = "config.yaml"
PERSONALIZATION_FILE = "personalization.jsonl"  # flat runs: per client, pre and post loss
FLAT_NODE = "(all clients)"  # the one node of a flat run's metrics


class RunDirError(FedGroupsError):
    """A run directory that ``fedgroups compare`` cannot read: missing, not a run, or not
    finished."""


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
    leaves: list[str]  # leaf federation paths (flat runs: eval dataset names)
    finished: bool
    rounds_planned: int | None
    tokens: int  # training tokens and client steps up to the compared round
    steps: int
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config.yaml
    kind: Literal["hierarchical", "flat"] = "hierarchical"

    def last_eval(self) -> dict[str, rec.EvalRecord]:
        """federation -> its record at the last evaluated round (MEAN_FEDERATION included)."""
        last = max(r.round for r in self.evals)
        return {r.federation: r for r in self.evals if r.round == last}


def is_run_dir(path: str | Path) -> bool:
    """True for a folder ``fedgroups train`` wrote to (its config or its metrics)."""
    p = Path(path)
    return any((p / name).is_file() for name in (CONFIG_FILE, rec.METRICS_FILE, rec.TREE_FILE))


@dataclass(frozen=True)
class _Records:
    method: str
    summary: rec.RunSummary
    evals: list[rec.EvalRecord]
    metrics: list[rec.NodeRoundRecord]
    attention: list[rec.AttentionRecord]
    leaves: list[str]
    config: dict[str, Any]


def load_run(path: str | Path, *, partial: bool = False, at_round: int | None = None) -> Run:
    """Read one run directory, hierarchical or flat; RunDirError says what is missing and
    what to do.

    ``at_round`` (rounds completed, from 1) compares the runs as they were after that
    round: its evaluation, and tokens and steps up to it; the run may go on beyond it.
    """
    run_dir = Path(path)
    if not run_dir.exists():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory (give the run's output_dir)")
    if not is_run_dir(run_dir):
        raise RunDirError(f"{run_dir}: not a run directory (no {CONFIG_FILE} and no "
                          f"{rec.METRICS_FILE}); give the output_dir of `fedgroups train`")
    kind: Literal["hierarchical", "flat"] = (
        "hierarchical" if rec.is_hierarchical_run(run_dir) else "flat")
    try:
        records = _read_hierarchical(run_dir) if kind == "hierarchical" else _read_flat(run_dir)
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # json, yaml, fields
        raise RunDirError(f"{run_dir}: cannot read its run records ({type(e).__name__}: "
                          f"{e}); was it written by another version of fedgroups?") from e
    summary, evals, metrics, attention = (records.summary, records.evals, records.metrics,
                                          records.attention)
    if not evals:
        raise RunDirError(f"{run_dir}: no evaluation yet (the run has done {summary.rounds} "
                          "round(s)); wait for the first evaluation (eval.every), or resume "
                          "the run")
    planned = records.config.get("rounds")
    finished = planned is None or summary.rounds >= int(planned)
    tokens, steps = summary.tokens, summary.steps
    if at_round is not None:
        evals, metrics, attention, tokens, steps = _up_to(
            run_dir, at_round, summary.rounds, evals, metrics, attention)
        finished = True
    if not finished and not partial:
        raise RunDirError(f"{run_dir}: unfinished, {summary.rounds} of {planned} rounds done; "
                          "resume it with `fedgroups train` (same config), or pass --partial "
                          "to compare it as it is")
    seed = records.config.get("seed")
    return Run(path=run_dir, method=records.method, seed=None if seed is None else int(seed),
               summary=summary, evals=evals, metrics=metrics, attention=attention,
               leaves=records.leaves, finished=finished,
               rounds_planned=None if planned is None else int(planned), tokens=tokens,
               steps=steps, config=records.config, kind=kind)


def _read_config(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / CONFIG_FILE).is_file():
        return {}
    config = rec.read_config(run_dir)
    if not isinstance(config, dict):
        raise ValueError(f"{CONFIG_FILE} is not a mapping")
    return config


def _read_hierarchical(run_dir: Path) -> _Records:
    if not (run_dir / rec.SUMMARY_FILE).is_file():
        raise RunDirError(f"{run_dir}: no {rec.SUMMARY_FILE} yet: the run has not finished "
                          "a round; wait for it, or resume it with `fedgroups train`")
    summary = rec.read_summary(run_dir)
    evals = rec.read_eval(run_dir)
    leaves = [r.federation for r in evals if r.federation != rec.MEAN_FEDERATION]
    if not leaves:
        leaves = [n.path for n in rec.read_tree(run_dir) if n.kind == "leaf"]
    return _Records(method=summary.method, summary=summary, evals=evals,
                    metrics=rec.read_metrics(run_dir), attention=rec.read_attention(run_dir),
                    leaves=list(dict.fromkeys(leaves)), config=_read_config(run_dir))


# --- flat runs ------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _num(row: dict[str, Any], key: str, default: float = math.nan) -> float:
    value = row.get(key)
    return default if value is None else float(value)


def eval_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The eval datasets of a flat run's metrics rows (``eval/<name>/loss`` columns)."""
    names = (k[len("eval/"):-len("/loss")] for r in rows for k in r
             if k.startswith("eval/") and k.endswith("/loss"))
    return list(dict.fromkeys(names))


def _read_flat(run_dir: Path) -> _Records:
    config = _read_config(run_dir)
    if not config:
        raise RunDirError(f"{run_dir}: no {CONFIG_FILE}; compare needs the run's resolved "
                          "config (written by `fedgroups train` when the run starts)")
    rows = sorted(_read_jsonl(run_dir / rec.METRICS_FILE), key=lambda r: r["round"])
    if not rows:
        raise RunDirError(f"{run_dir}: no {rec.METRICS_FILE} rows yet: the run has not "
                          "finished a round; wait for it, or resume it with `fedgroups train`")
    method = str((config.get("algorithm") or {}).get("name", "fedavg"))
    names = eval_names(rows)
    pooled = _pooled_personalization(_read_jsonl(run_dir / PERSONALIZATION_FILE))
    metrics, evals = [], []
    cum_tokens = cum_steps = 0
    for row in rows:
        cum_tokens += int(_num(row, "tokens", 0))
        cum_steps += int(_num(row, "steps", 0))
        metrics.append(_flat_metrics(method, row, cum_tokens, cum_steps))
        evals += _flat_evals(method, row, names, pooled.get(int(row["round"])))
    mean = [e for e in evals if e.federation == rec.MEAN_FEDERATION]
    summary = rec.RunSummary(
        method=method, rounds=int(rows[-1]["round"]),
        client_updates=int(sum(_num(r, "clients", 0) for r in rows)), steps=cum_steps,
        tokens=cum_tokens, seconds=sum(_num(r, "seconds", 0) for r in rows),
        tokens_per_s=math.nan, eval_loss=mean[-1].loss if mean else None,
        eval_ppl=mean[-1].ppl if mean else None, federations={}, parameters=0,
        key_parameters=0)
    return _Records(method=method, summary=summary, evals=evals, metrics=metrics,
                    attention=[], leaves=names, config=config)


def _flat_metrics(method: str, row: dict[str, Any], cum_tokens: int,
                  cum_steps: int) -> rec.NodeRoundRecord:
    return rec.NodeRoundRecord(
        method=method, round=int(row["round"]), node=FLAT_NODE, level=0, kind="root",
        inner_rounds=1, train_loss=_num(row, "train_loss"),
        clients=int(_num(row, "clients", 0)), skipped=int(_num(row, "skipped", 0)),
        tokens=int(_num(row, "tokens", 0)), examples=int(_num(row, "examples", 0)),
        steps=int(_num(row, "steps", 0)), cum_tokens=cum_tokens, cum_steps=cum_steps,
        server_lr=_num(row, "server_lr"), dp_epsilon=None, dp_delta=None,
        seconds=_num(row, "seconds", 0), tokens_per_s=_num(row, "tokens_per_s", 0))


def _pers(row: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """pers_pre_p50 ... from a flat row's ``pers/<name>/pre_p50`` ... columns."""
    return {f"pers_{part}_p{q}": row.get(f"{prefix}/{part}_p{q}")
            for part in ("pre", "post") for q in (10, 50, 90)}


def _flat_evals(method: str, row: dict[str, Any], names: Sequence[str],
                pooled: dict[str, float | None] | None) -> list[rec.EvalRecord]:
    """One EvalRecord per eval dataset evaluated in this row, and the mean row: the mean
    loss over datasets (eval tokens are not recorded by flat runs, so unweighted)."""
    round_ = int(row["round"])
    out = []
    for name in names:
        loss = row.get(f"eval/{name}/loss")
        if loss is None:
            continue
        ppl = row.get(f"eval/{name}/ppl")
        out.append(rec.EvalRecord(
            method=method, round=round_, federation=name, level=1, loss=float(loss),
            ppl=float(ppl) if ppl is not None else _exp(float(loss)), tokens=0,
            clients=int(_num(row, f"eval/{name}/clients", 0)), **_pers(row, f"pers/{name}")))
    if not out:
        return []
    losses = [e.loss for e in out if math.isfinite(e.loss)]
    mean = sum(losses) / len(losses) if losses else math.nan
    pers = _pers(row, f"pers/{out[0].federation}") if len(out) == 1 else (pooled or {})
    out.append(rec.EvalRecord(
        method=method, round=round_, federation=rec.MEAN_FEDERATION, level=-1, loss=mean,
        ppl=_exp(mean), tokens=0, clients=sum(e.clients for e in out), **pers))
    return out


def _exp(loss: float) -> float:
    return math.exp(loss) if loss < 50 else math.inf


def _pooled_personalization(records: Sequence[dict[str, Any]],
                            ) -> dict[int, dict[str, float | None]]:
    """round -> pers_pre_p10 ... over every personalized client of every eval dataset."""
    by_round: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_round.setdefault(int(r["round"]), []).append(r)
    return {round_: {f"pers_{part}_p{q}": percentile([float(r[part]) for r in rs], q)
                     for part in ("pre", "post") for q in (10, 50, 90)}
            for round_, rs in by_round.items()}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (NumPy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# --- a compared round -----------------------------------------------------------------------

def _up_to(run_dir: Path, at_round: int, done: int, evals: list[rec.EvalRecord],
           metrics: list[rec.NodeRoundRecord], attention: list[rec.AttentionRecord],
           ) -> tuple[list, list, list, int, int]:
    """The records of the first ``at_round`` rounds, and tokens and steps up to it."""
    if at_round < 1:
        raise RunDirError(f"--round must be >= 1; got {at_round}")
    if done < at_round:
        raise RunDirError(f"{run_dir}: has done {done} round(s), fewer than --round {at_round}")
    evaluated = sorted({r.round for r in evals})
    if at_round not in evaluated:
        raise RunDirError(f"{run_dir}: no evaluation after round {at_round}; it evaluated "
                          f"after rounds {evaluated} (eval.every)")
    root = [m for m in metrics if m.level == 0 and m.round == at_round]
    if not root:
        raise RunDirError(f"{run_dir}: {rec.METRICS_FILE} has no root row for round "
                          f"{at_round}")
    return ([r for r in evals if r.round <= at_round],
            [m for m in metrics if m.round <= at_round],
            [a for a in attention if a.round <= at_round], root[0].cum_tokens,
            root[0].cum_steps)


# --- rows of the table ----------------------------------------------------------------------

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
            return _fmt(self.mean, digits)
        return f"{_fmt(self.mean, digits)} [{_fmt(self.low, digits)}–{_fmt(self.high, digits)}]"


def _fmt(x: float, digits: int) -> str:
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
    pers_pre: Cell | None = None  # median held-out loss over clients, before fine-tuning
    pers_post: Cell | None = None  # ... and after (None: no personalization)


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
            epsilon=Cell.of(eps),
            pers_pre=Cell.of([m.pers_pre_p50 if m else None for m in mean]),
            pers_post=Cell.of([m.pers_post_p50 if m else None for m in mean])))
    return rows, leaves
