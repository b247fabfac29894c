"""What a run tells people as it goes and at the end: labels, eval lines, the summary table.

Rounds are counted as in ``metrics.csv``: ``round`` is the number of rounds completed (the
row written after the first round says 1), so after ``rounds: 30`` the last row and the
summary both say round 30, as the checkpoint ``round_000030.pt`` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# FedAvg's training loss is the mean over the clients' local steps (weights moving);
# FedSGD's is the cohort's loss at the global weights, before the step.
TRAIN_LOSS_LABELS = {
    "fedavg": "train loss (mean over local steps)",
    "fedsgd": "train loss (cohort, at global weights)",
}


def train_loss_label(algorithm: str) -> str:
    return TRAIN_LOSS_LABELS.get(algorithm, "train loss")


def eval_lines(row: Mapping[str, Any]) -> list[str]:
    """One line per eval dataset (and personalization) in ``row``, as printed during a run."""
    out = []
    for k in sorted(k for k in row if k.startswith("eval/") and k.endswith("/loss")):
        name = k[len("eval/"):-len("/loss")]
        ppl = row.get(f"eval/{name}/ppl")
        ppl_text = f"{ppl:.2f}" if isinstance(ppl, float) and math.isfinite(ppl) else "-"
        line = (f"round {row['round']}: eval {name} loss {_num(row[k])} ppl {ppl_text} "
                f"({int(row.get(f'eval/{name}/clients') or 0)} clients)")
        pre, post = row.get(f"pers/{name}/pre_p50"), row.get(f"pers/{name}/post_p50")
        if pre is not None:
            line += f"; personalized p50 {_num(pre)} -> {_num(post)}"
        out.append(line)
    return out


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def summary_table(rows: list[dict[str, Any]], algorithm: str = "fedavg") -> str:
    """The last round's main numbers as an aligned text table."""
    if not rows:
        return "(no rounds)"
    last = rows[-1]
    lines = [(f"round {last['round']} (rounds done, as in metrics.csv): "
              f"{train_loss_label(algorithm)} {_num(last['train_loss'])}, "
              f"{last['tokens_per_s']:.0f} tokens/s")]
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    if evals:
        e = evals[-1]
        for k in sorted(k for k in e if k.startswith("eval/") and k.endswith("/loss")):
            name = k[len("eval/"):-len("/loss")]
            ppl = e.get(f"eval/{name}/ppl")
            lines.append(f"eval {name:<20} loss {_num(e[k])}  ppl "
                         f"{ppl if ppl is None else round(ppl, 2)}"
                         f"  clients {int(e[f'eval/{name}/clients'])}  (round {e['round']})")
        pers_names = sorted({k.split("/")[1] for k in e if k.startswith("pers/")})
        if pers_names:
            lines.append(f"{'personalization':<28}{'p10':>8}{'p50':>8}{'p90':>8}")
        for name in pers_names:
            for phase in ("pre", "post"):
                vals = [e.get(f"pers/{name}/{phase}_p{q}") for q in (10, 50, 90)]
                cells = "".join(f"{v:>8.4f}" if v is not None and math.isfinite(v) else f"{'-':>8}"
                                for v in vals)
                lines.append(f"  {name + ' ' + phase:<26}{cells}")
    return "\n".join(lines)
