"""``fedgroups compare RUN...``: runs side by side, as tables and PNGs.

Each run directory, hierarchical or flat, is read and summarised by ``results.py``.
Folders that are not runs (no ``config.yaml``, no ``metrics.jsonl``: a glob also matches
the comparison's own output folder) are skipped and named.

Runs are one **experiment** when their resolved configs agree except in the method
(``hierarchy.method``; a flat run's ``algorithm`` section and server lr schedule), the
seed, ``output_dir`` and settings that do not change results (:data:`IGNORED`); and on
the dataset's index checksum where the runs record one. Each experiment gets its own table,
headed by the settings that set it apart from the others, and its own PNGs. Within one, the
runs of one method (seeds) make one row: each number is their mean, with the range
(min–max) over runs beside it. A row has the perplexity of each leaf federation's model on
its own held-out groups (flat runs: of the global model on each eval dataset) at the last
evaluation, their mean, the median personalized loss before and after fine-tuning where
personalization ran, the training tokens and client steps (equal compute means equal
columns here), and ε where differential privacy ran. Everything printed is also written as
``compare.md``, and the numbers as ``compare.csv``, beside the plots (``plots.py``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedgroups.fl.hierarchy.results import (
    Cell,
    Row,
    Run,
    RunDirError,
    is_run_dir,
    load_run,
    make_rows,
    short_name,
)

# Settings that do not change a run's results: never a reason to keep runs apart.
IGNORED = frozenset({"output_dir", "seed", "run.progress", "run.loggers",
                     "run.checkpoint_every", "run.keep_checkpoints", "run.threads",
                     "run.client_threads"})
# Settings that make the method: runs that differ only here are compared as rows.
METHOD_PREFIXES = ("hierarchy.method", "algorithm.", "server.schedule.")
DATASETS_FILE = "datasets.json"  # where a run records the identity of the data it read
# The dataset's identity besides data.path: its index checksum, where the runs record it.
_DIGEST = "data.index_sha256"
# Differing settings named in the printed header of an experiment (all in compare.md).
_SHOWN_SETTINGS = 8


# --- experiments ----------------------------------------------------------------------------

def flat_settings(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"a.b.c": json value}`` (lists and empty sections as values)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_settings(value, f"{name}."))
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def is_method_setting(name: str) -> bool:
    return any(name == p or name.startswith(p) for p in METHOD_PREFIXES)


def experiment_settings(run: Run) -> dict[str, str]:
    """What must agree for two runs to be one experiment."""
    settings = {k: v for k, v in flat_settings(run.config).items()
                if k not in IGNORED and not is_method_setting(k)}
    settings["kind"] = json.dumps(run.kind)
    digest = index_digest(run)
    if digest is not None:
        settings[_DIGEST] = json.dumps(digest)
    return settings


def index_digest(run: Run) -> str | None:
    """The identity of the datasets the run read, where it recorded one: ``datasets.json``
    (``{name: {path, index_sha256}}``, as checkpoints hold it), else an ``index_sha256`` in
    its config's ``data`` section or in ``summary.json``. Digests are cut to 12 hex digits."""
    file = run.path / DATASETS_FILE
    if file.is_file():
        try:
            ids = json.loads(file.read_text())
        except ValueError as e:
            raise RunDirError(f"{file}: not valid JSON ({e}); delete it to compare by "
                              "data.path alone") from e
        pairs = sorted(f"{v.get('path')}@{str(v['index_sha256'])[:12]}" for v in ids.values()
                       if isinstance(v, dict) and v.get("index_sha256"))
        if pairs:
            return ", ".join(pairs)
    data = run.config.get("data") or {}
    extra = run.summary.extra
    found = (data.get("index_sha256") if isinstance(data, dict) else None) \
        or (extra.get("dataset") or {}).get("index_sha256") or extra.get("index_sha256")
    return None if found is None else str(found)[:12]


def method_labels(runs: Sequence[Run]) -> list[str]:
    """Each run's row label: its method, plus the method settings that differ between runs
    of the same method (``fedavg schedule=warmup_cosine, warmup_rounds=1``)."""
    settings = [{k: v for k, v in flat_settings(r.config).items()
                 if is_method_setting(k) and k not in ("hierarchy.method", "algorithm.name")}
                for r in runs]
    labels = []
    for run, own in zip(runs, settings):
        peers = [s for r, s in zip(runs, settings) if r.method == run.method]
        varying = sorted(k for k in {k for s in peers for k in s}
                         if len({s.get(k) for s in peers}) > 1)
        names = _short_setting_names(varying)
        extra = ", ".join(f"{names[k]}={_plain(own.get(k))}" for k in varying)
        labels.append(f"{run.method} {extra}" if extra else run.method)
    return labels


def _short_setting_names(keys: Sequence[str]) -> dict[str, str]:
    """The last part of each dotted key (``server.schedule.name`` -> ``schedule``, a
    ``name`` standing for its section), or the key less its section where that repeats."""
    def short(key: str) -> str:
        parts = key.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    shorts = [short(k) for k in keys]
    return {k: s if shorts.count(s) == 1 else k.split(".", 1)[-1]
            for k, s in zip(keys, shorts)}


def _plain(value: str | None) -> str:
    if value is None:
        return "(unset)"
    loaded = json.loads(value)
    return loaded if isinstance(loaded, str) else value


@dataclass(frozen=True)
class Experiment:
    """Runs that differ only in method and seed, their table rows and what sets them apart
    from the other experiments of the comparison."""

    runs: list[Run]
    rows: list[Row]
    leaves: list[str]
    differs: dict[str, str]  # setting -> this experiment's value (empty for one experiment)


def group_experiments(runs: Sequence[Run]) -> list[Experiment]:
    """Split runs into experiments (in the order first given) and label their methods."""
    signatures = [experiment_settings(r) for r in runs]
    if any(index_digest(r) is None for r in runs):  # compare by data.path alone
        for s in signatures:
            s.pop(_DIGEST, None)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(signatures):
        groups.setdefault(json.dumps(s, sort_keys=True), []).append(i)
    firsts = [signatures[idx[0]] for idx in groups.values()]
    keys = sorted({k for s in firsts for k in s})
    differing = [k for k in keys if len({s.get(k) for s in firsts}) > 1]
    out = []
    for idx, first in zip(groups.values(), firsts):
        members = [runs[i] for i in idx]
        labelled = [dataclasses.replace(r, method=label)
                    for r, label in zip(members, method_labels(members))]
        rows, leaves = make_rows(labelled)
        out.append(Experiment(runs=labelled, rows=rows, leaves=leaves,
                              differs={k: _plain(first.get(k)) for k in differing}))
    return out


# --- the table ------------------------------------------------------------------------------

def header(leaves: Sequence[str], with_eps: bool, with_pers: bool = False) -> list[str]:
    names = [short_name(leaf) for leaf in leaves]
    if len(set(names)) < len(names):  # two leaves share a name: keep their paths
        names = list(leaves)
    cols = ["method", "runs", *names, "mean ppl"]
    cols += ["pers. loss p50 before", "after"] if with_pers else []
    cols += ["tokens", "client steps"]
    return cols + (["ε"] if with_eps else [])


def _text(cell: Cell | None, digits: int = 2) -> str:
    return cell.text(digits) if cell else "–"


def table_rows(rows: Sequence[Row], leaves: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The table as text cells (ranges over runs in brackets)."""
    with_eps = any(r.epsilon is not None for r in rows)
    with_pers = any(r.pers_post is not None for r in rows)
    body = []
    for r in rows:
        cells = [r.method, str(len(r.runs))]
        cells += [_text(r.ppl[leaf]) for leaf in leaves]
        cells.append(_text(r.mean_ppl))
        if with_pers:
            cells += [_text(r.pers_pre, 3), _text(r.pers_post, 3)]
        cells += [_text(r.tokens, 0), _text(r.steps, 0)]
        if with_eps:
            cells.append(_text(r.epsilon))
        body.append(cells)
    return header(leaves, with_eps, with_pers), body


def markdown(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def write_csv(experiments: Sequence[Experiment], path: Path) -> None:
    """Machine-readable: one line per (experiment, method), means and ranges in separate
    columns; the leaf columns are the union over experiments."""
    leaves = list(dict.fromkeys(leaf for e in experiments for leaf in e.leaves))
    fields = ["experiment", "method", "runs"]
    names = [*leaves, "mean_ppl", "mean_loss", "pers_pre_p50", "pers_post_p50", "tokens",
             "steps", "epsilon"]
    for name in names:
        fields += [name, f"{name}_min", f"{name}_max"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for n, e in enumerate(experiments, 1):
            for r in e.rows:
                line: list[Any] = [n, r.method, len(r.runs)]
                for cell in [*(r.ppl.get(leaf) for leaf in leaves), r.mean_ppl, r.mean_loss,
                             r.pers_pre, r.pers_post, r.tokens, r.steps, r.epsilon]:
                    line += [cell.mean, cell.low, cell.high] if cell else ["", "", ""]
                w.writerow(line)


def compute_notes(rows: Sequence[Row]) -> list[str]:
    """Say whether the methods had equal compute, which runs are unfinished, and which
    runs of a method share a seed (the same run twice?)."""
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
        seeds: dict[int | None, list[str]] = {}
        for run in r.runs:
            seeds.setdefault(run.seed, []).append(str(run.path))
            if not run.finished:
                notes.append(f"{run.path}: unfinished ({run.summary.rounds} of "
                             f"{run.rounds_planned} rounds)")
        for seed, paths in seeds.items():
            if len(paths) > 1:
                notes.append(f"{r.method}: {', '.join(paths)} have the same seed {seed} "
                             "(the same run twice?); each is counted")
    return notes


def experiment_header(n: int, total: int, e: Experiment, limit: int | None) -> str:
    paths = ", ".join(str(r.path) for r in e.runs)
    items = [f"{k}={v}" for k, v in e.differs.items()]
    shown = items if limit is None else items[:limit]
    more = f" … and {len(items) - len(shown)} more (compare.md lists all)" \
        if len(shown) < len(items) else ""
    return (f"## experiment {n} of {total}: {len(e.runs)} run(s): {paths}\n"
            f"settings that differ between the experiments: {', '.join(shown)}{more}\n")


# --- the command ----------------------------------------------------------------------------

def split_run_dirs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(runs, skipped): existing folders without a run's files are skipped; a missing path
    or a file stays in ``runs`` so that load_run names the mistake."""
    runs, skipped = [], []
    for p in map(Path, paths):
        (skipped if p.is_dir() and not is_run_dir(p) else runs).append(p)
    return runs, skipped


def compare(run_dirs: Sequence[str | Path], out: str | Path, *, partial: bool = False,
            plots: bool = True, at_round: int | None = None) -> dict[str, Any]:
    """Read the runs, write compare.md, compare.csv and the PNGs into ``out``; return what
    was written, the text printed and the experiments."""
    if not run_dirs:
        raise RunDirError("give at least one run directory")
    paths, skipped = split_run_dirs(run_dirs)
    notes = [f"skipped {p}: not a run (no config.yaml or metrics.jsonl)" for p in skipped]
    if not paths:
        raise RunDirError(f"none of the {len(skipped)} folder(s) given is a run (no "
                          "config.yaml or metrics.jsonl): give output_dirs of `fedgroups train`")
    runs = [load_run(p, partial=partial, at_round=at_round) for p in paths]
    experiments = group_experiments(runs)
    if at_round is not None:
        notes.append(f"compared after round {at_round} (its evaluation, and tokens and "
                     "client steps up to it)")
    if len(experiments) > 1:
        notes.append(f"the runs are {len(experiments)} experiments (their configs differ in "
                     "more than method and seed): a table for each, never averaged together")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    many = len(experiments) > 1
    text = "".join(f"{note}\n" for note in notes)
    md, tables, written = text, "", []
    for n, e in enumerate(experiments, 1):
        table = markdown(*table_rows(e.rows, e.leaves))
        own = compute_notes(e.rows)
        notes += [f"experiment {n}: {note}" for note in own] if many else own
        body = table + "".join(f"{note}\n" for note in own)
        if many:
            head = experiment_header(n, len(experiments), e, _SHOWN_SETTINGS)
            tables += f"\n{head}\n{table}"
            text += f"\n{head}\n{body}"
            md += f"\n{experiment_header(n, len(experiments), e, None)}\n{body}"
        else:
            tables, text, md = table, text + body, md + body
        if plots:
            from fedgroups.fl.hierarchy import plots as hplots

            where = out_dir / f"experiment-{n}" if many else out_dir
            where.mkdir(exist_ok=True)
            written += hplots.plot_all(e.rows, e.leaves, where)
    md_path, csv_path = out_dir / "compare.md", out_dir / "compare.csv"
    md_path.write_text(md)
    write_csv(experiments, csv_path)
    return {"text": text, "table": tables.lstrip("\n"), "notes": notes,
            "files": [md_path, csv_path, *written], "experiments": experiments,
            "skipped": skipped, "rows": [r for e in experiments for r in e.rows],
            "leaves": list(dict.fromkeys(leaf for e in experiments for leaf in e.leaves))}


def add_compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="runs side by side (flat or hierarchical): tables "
                       "and plots", description="A table per experiment (method × federation "
                       "or eval dataset perplexity, mean, personalization, tokens, client "
                       "steps, ε) printed and written as Markdown and CSV, and PNGs: "
                       "perplexity per federation, loss curves, attention weights. Runs "
                       "whose configs differ in more than method and seed are separate "
                       "experiments, each with its own table; folders that are not runs "
                       "are skipped.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (output_dir)")
    p.add_argument("--out", default="compare", help="where to write the table and PNGs "
                   "(default: ./compare)")
    p.add_argument("--partial", action="store_true", help="compare unfinished runs as they are")
    p.add_argument("--round", type=int, default=None, metavar="N", help="compare the runs as "
                   "they were after round N (rounds completed; an evaluated round; they may "
                   "go on)")
    p.add_argument("--no-plots", action="store_true", help="only the table")


def run_compare(args: argparse.Namespace) -> int:
    result = compare(args.runs, args.out, partial=args.partial, plots=not args.no_plots,
                     at_round=args.round)
    print(result["text"], end="")
    print("wrote " + ", ".join(str(p) for p in result["files"]))
    return 0
