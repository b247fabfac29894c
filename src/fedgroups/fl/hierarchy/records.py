"""What a hierarchical run writes to its run directory, and how to read it back.

This module is the contract between the trainer (``fl/hierarchy/runner.py``) and whoever
reads runs (``fedgroups compare``, benchmarks, notebooks).  Every file is line-oriented
JSON or plain JSON, written atomically or appended line by line; non-finite floats are
written as ``null`` and read back as ``nan``.  See ``docs/hierarchy.md`` ("Run outputs")::

    config.yaml        resolved config, ``hierarchy:`` section included (every default)
    tree.json          the resolved tree: one entry per node (TreeNodeRecord)
    metrics.jsonl/.csv one row per (root round, node): NodeRoundRecord
    eval.jsonl         one row per (eval round, leaf federation) + one mean row: EvalRecord
    attention.jsonl    one row per aggregation that mixed key layers: AttentionRecord
    summary.json       totals and final numbers of the run: RunSummary
    checkpoints/, tokenizer.json, plots/   as in a flat run

Readers return frozen dataclasses; unknown extra keys in a file are kept in ``extra`` so
an older reader does not break on a newer run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

RECORDS_VERSION = 1

MethodName = Literal["fl", "hierfavg", "fedper", "local", "worldlm", "worldlm-noresidual",
                     "worldlm-mean"]
NodeKind = Literal["root", "federation", "leaf"]  # leaf = a federation whose children are clients
MEAN_FEDERATION = "*"  # the ``federation`` of the token-weighted mean row in eval.jsonl

TREE_FILE = "tree.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
ATTENTION_FILE = "attention.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True, kw_only=True)
class TreeNodeRecord:
    """One node of the resolved tree (``tree.json`` holds a list of these, root first)."""

    path: str  # "world/romance/es": names from the root, joined by "/"
    name: str
    level: int  # depth: 0 = root
    kind: NodeKind
    parent: str | None  # parent's path; None for the root
    children: list[str]  # children's paths (federations); [] for a leaf
    train_clients: int  # groups this node's subtree trains on
    eval_clients: int  # held-out groups of this node's subtree
    settings: dict[str, Any]  # resolved: rounds, cohort_size, server, weighting, privacy, ...
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class NodeRoundRecord:
    """One node's work during one root round (``metrics.jsonl``; CSV mirror ``metrics.csv``).

    ``round`` (here and in every record) counts root rounds completed: 1 after the first.

    Counters cover every client update under this node in that root round (all of its
    inner rounds and those of its descendants).  ``cum_*`` are totals since the start of the run.
    """

    method: str
    round: int  # root rounds completed (1 = after the first)
    node: str  # path
    level: int
    kind: NodeKind
    inner_rounds: int  # rounds this node ran in this root round
    train_loss: float  # token-weighted mean training loss of the client updates
    clients: int  # client updates that counted
    skipped: int  # clients with too little data
    tokens: int  # training tokens processed (loss denominators)
    examples: int
    steps: int  # client optimizer steps
    cum_tokens: int
    cum_steps: int
    server_lr: float  # this node's server lr in its last inner round (nan: no server step)
    dp_epsilon: float | None  # privacy spent so far at dp_delta (None: no DP at this node)
    dp_delta: float | None
    seconds: float  # wall time of the node's work in this root round (root row: the round)
    tokens_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. dp/fraction_clipped


@dataclass(frozen=True, kw_only=True)
class EvalRecord:
    """A leaf federation's model (B + its K) on its own held-out groups (``eval.jsonl``).

    The row with ``federation == MEAN_FEDERATION`` is the token-weighted mean over leaves.
    ``pers_*`` are percentiles over held-out clients of the loss on the second part of each
    client's sequences, before (``pre``) and after (``post``) fine-tuning on the first part,
    as the flat trainer computes them; None when personalization did not run that round.
    """

    method: str
    round: int  # root rounds completed when the evaluation ran (1 = after the first)
    federation: str  # leaf path, or MEAN_FEDERATION
    level: int  # leaf depth (-1 for the mean row)
    loss: float
    ppl: float
    tokens: int  # eval tokens
    clients: int  # held-out groups evaluated
    dp_epsilon: float | None = None  # the largest epsilon on the path root -> leaf
    pers_pre_p10: float | None = None
    pers_pre_p50: float | None = None
    pers_pre_p90: float | None = None
    pers_post_p10: float | None = None
    pers_post_p50: float | None = None
    pers_post_p90: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AttentionRecord:
    """Attention weights of one key-layer aggregation at one node (``attention.jsonl``).

    ``matrix[i][j]`` is how much row ``rows[i]`` (a child of ``node`` that took part in
    that round) took from column ``columns[j]``; each row sums to 1.  Columns are the rows
    (same order) followed by residual keys routed from other sub-federations
    (``residual[j]`` is True for those; their names are paths elsewhere in the tree).
    The matrix is the mean over key-layer tensors of the per-tensor attention.
    """

    method: str
    round: int  # root rounds completed by the end of this one (1 = in the first)
    node_round: int  # the node's own round counter, 0-based (several per root round when rounds > 1)
    node: str
    level: int  # the node's level; rows are its children (level + 1)
    rows: list[str]
    columns: list[str]
    residual: list[bool]
    matrix: list[list[float]]
    tau: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """Totals and final numbers of a run (``summary.json``, rewritten after every round)."""

    method: str
    rounds: int  # root rounds done
    client_updates: int
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    eval_loss: float | None  # token-weighted mean over leaves, last evaluation
    eval_ppl: float | None
    federations: dict[str, dict[str, float | None]]  # leaf path -> {loss, ppl, tokens, dp_epsilon}
    parameters: int  # model parameters
    key_parameters: int  # parameters in the key layers K (0 for fl/hierfavg)
    version: int = RECORDS_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


# --- writing ---------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(record: Any) -> dict[str, Any]:
    """A record as a flat JSON dict (``extra`` merged into the top level)."""
    data = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    extra = data.pop("extra", {})
    return _clean({**data, **extra})


def append_jsonl(path: Path, records: Iterable[Any]) -> None:
    with path.open("a") as f:
        for r in records:
            f.write(json.dumps(to_json(r)) + "\n")


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=1) + "\n")
    tmp.replace(path)


# --- reading ---------------------------------------------------------------------------


def _from_json(cls: Any, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    floats = {f.name for f in dataclasses.fields(cls) if f.type in ("float", "float | None")}
    for k in floats & known.keys():
        if known[k] is None and cls.__dataclass_fields__[k].type == "float":
            known[k] = math.nan
    extra = {k: v for k, v in data.items() if k not in names}
    return cls(**known, extra=extra)


def _read_jsonl(path: Path, cls: Any) -> list[Any]:
    if not path.exists():
        return []
    with path.open() as f:
        return [_from_json(cls, json.loads(ln)) for ln in f if ln.strip()]


def read_tree(run_dir: str | Path) -> list[TreeNodeRecord]:
    data = json.loads((Path(run_dir) / TREE_FILE).read_text())
    return [_from_json(TreeNodeRecord, n) for n in data["nodes"]]


def read_metrics(run_dir: str | Path) -> list[NodeRoundRecord]:
    return _read_jsonl(Path(run_dir) / METRICS_FILE, NodeRoundRecord)


def read_eval(run_dir: str | Path) -> list[EvalRecord]:
    return _read_jsonl(Path(run_dir) / EVAL_FILE, EvalRecord)


def read_attention(run_dir: str | Path) -> list[AttentionRecord]:
    return _read_jsonl(Path(run_dir) / ATTENTION_FILE, AttentionRecord)


def read_summary(run_dir: str | Path) -> RunSummary:
    return _from_json(RunSummary, json.loads((Path(run_dir) / SUMMARY_FILE).read_text()))


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config as a plain dict (``hierarchy.method`` names the method)."""
    import yaml

    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text())


def is_hierarchical_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / TREE_FILE).is_file()
