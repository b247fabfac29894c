"""Federations of federations: what the hierarchy costs, against baselines in the same run.

1. Throughput: training tokens/s of ``worldlm`` over ``fl`` (flat FedAvg over the same leaf
   clients) at equal compute: the runner gives ``fl`` the tree's client steps per round
   (docs/hierarchy.md), so both train the same number of steps of the same model on the
   same corpus (Django's translations, ``django_l10n``, three families of two languages).
   Tokens/s is the runner's own (``summary.json``: tokens over the wall time of the rounds,
   evaluation and checkpoints excluded). The tokenizer is trained once and loaded by every
   run. One untimed warm-up pair, then repeats in alternating order (fl worldlm, worldlm
   fl, ...); the ratio reported is the median over pairs, with the range.
   Target: >= 0.9 (the hierarchy costs bookkeeping, not compute).
2. Memory: peak RSS of a ``worldlm`` run with 1, 8 and 64 leaf federations over the same
   256 documents of synthetic text (so the data and the client work per round are the same
   size), each in a fresh process sampled every 5 ms, against ``fl`` on the same data
   (no key-layer copies). Reported: MB per extra leaf = (RSS(64) - RSS(1)) / 63, against
   the size of one copy of the key layers K (the leaf's own, plus what a round keeps).

    python benchmarks/hierarchy.py [--rounds 3] [--repeats 3] [--preset tiny]

``--threads`` (default 1) is the same for every run; see benchmarks/train.py for why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PeakMemory


class TreePeak(PeakMemory):
    """PeakMemory whose sampler survives a child process ending while it is listed (the
    torch runs start and end helper processes; psutil then raises in children())."""

    def _sample(self) -> int:
        import psutil

        try:
            return super()._sample()
        except psutil.Error:
            return 0

LANGUAGES = "es,fr,de,nl,ru,pl"
MEMORY_LEAVES = (1, 8, 64)
MEMORY_DOCS = 256


def base_config(data: str, out: str, method: str, a: argparse.Namespace,
                tokenizer: str | None, preset: str) -> dict[str, Any]:
    return {
        "data": {"path": data, "text_column": "text"}, "output_dir": out,
        "rounds": a.rounds, "cohort_size": 4, "seed": 0,
        "tokenizer": {"path": tokenizer} if tokenizer else {"vocab_size": 1024,
                                                             "sample_groups": 2000},
        "model": {"preset": preset, "seq_len": 32},
        "client": {"optimizer": "adam", "lr": 3e-3, "local_steps": 4, "batch_size": 8,
                   "max_sequences": 32},
        "eval": {"max_sequences": 2, "batch_size": 2},
        "personalization": {"enabled": False},
        "run": {"threads": a.threads, "progress": False, "checkpoint_every": 1000},
        "hierarchy": {"method": method, "levels": ["family", "lang"], "eval_max_clients": 1},
    }


def train(cfg: dict[str, Any]) -> Any:
    from fedgroups.fl.config import parse_config
    from fedgroups.fl.hierarchy.runner import run

    return run(parse_config(cfg), echo=lambda m: None).summary


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f})"


# --- 1. throughput ----------------------------------------------------------------------------

def throughput(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import fedgroups as fg

    data = str(tmp / "world")
    fg.recipes.django_l10n(data, languages=LANGUAGES, progress=False)
    first = train(base_config(data, str(tmp / "tok"), "fl", a, None, a.preset))
    tokenizer = str(tmp / "tok" / "tokenizer.json")
    del first
    runs = 0

    def one(method: str) -> tuple[float, int, int, float]:
        nonlocal runs
        runs += 1
        s = train(base_config(data, str(tmp / f"r{runs}"), method, a, tokenizer, a.preset))
        return s.tokens_per_s, s.tokens, s.steps, s.steps / s.seconds

    # tokens/s is the target's measure; steps/s beside it, because the two methods do not
    # train exactly the same tokens per step (their cohorts differ)

    one("fl"), one("worldlm")  # warm-up pair, untimed
    ratios, step_ratios, rows = [], [], []
    for i in range(a.repeats):
        order = ("fl", "worldlm") if i % 2 == 0 else ("worldlm", "fl")
        got = {m: one(m) for m in order}
        ratios.append(got["worldlm"][0] / got["fl"][0])
        step_ratios.append(got["worldlm"][3] / got["fl"][3])
        rows.append(got)
    print("1. throughput (training tokens/s; tokenizer, evaluation, checkpoints excluded)")
    for i, got in enumerate(rows):
        print(f"   pair {i}: fl {got['fl'][0]:,.0f} tok/s ({got['fl'][1]:,} tokens, "
              f"{got['fl'][2]:,} steps)   worldlm {got['worldlm'][0]:,.0f} tok/s "
              f"({got['worldlm'][1]:,} tokens, {got['worldlm'][2]:,} steps)")
    print(f"   worldlm / fl tokens/s: {spread(ratios)}   target >= 0.9")
    print(f"   worldlm / fl client steps/s: {spread(step_ratios)}")
    return {"ratios": ratios, "step_ratios": step_ratios, "pairs": rows}


# --- 2. memory --------------------------------------------------------------------------------

def synthetic(out: Path, leaves: int, seed: int = 0) -> str:
    """MEMORY_DOCS documents of random words split evenly over ``leaves`` languages in
    families of at most 8; each language draws from its own vocabulary."""
    import numpy as np
    import pyarrow as pa

    import fedgroups as fg

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    text, doc, lang, family = [], [], [], []
    per_leaf = MEMORY_DOCS // leaves
    for leaf in range(leaves):
        vocab = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(2, 9, 300)]
        for d in range(per_leaf):
            for _ in range(12):
                text.append(" ".join(rng.choice(vocab, size=12)))
                doc.append(f"l{leaf}/d{d}")
                lang.append(f"l{leaf}")
                family.append(f"f{leaf // 8}")
    table = pa.table({"text": text, "doc": doc, "lang": lang, "family": family})
    fg.build(table, "field:doc", str(out), group_columns=("family", "lang"), progress=False)
    return str(out)


def child(cfg_path: str) -> None:
    """Run one training from a JSON config (a fresh process, for peak RSS); print its summary."""
    s = train(json.loads(Path(cfg_path).read_text()))
    print(json.dumps({"key_parameters": s.key_parameters, "parameters": s.parameters,
                      "steps": s.steps}))


def memory(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    datasets = {n: synthetic(tmp / f"syn{n}", n) for n in MEMORY_LEAVES}
    tok_run = base_config(datasets[MEMORY_LEAVES[-1]], str(tmp / "mtok"), "fl", a, None,
                          a.memory_preset)
    train(tok_run)
    tokenizer = str(tmp / "mtok" / "tokenizer.json")
    peaks: dict[tuple[str, int], list[float]] = {}
    info: dict[str, Any] = {}
    k = 0
    for _rep in range(a.memory_repeats):
        for n in MEMORY_LEAVES:
            for method in ("fl", "worldlm"):
                k += 1
                cfg = base_config(datasets[n], str(tmp / f"m{k}"), method, a, tokenizer,
                                  a.memory_preset)
                cfg["cohort_size"] = 2
                path = tmp / f"m{k}.json"
                path.write_text(json.dumps(cfg))
                with TreePeak(interval=0.005, pid_command=[
                        sys.executable, __file__, "--child", str(path)]) as pm:
                    pass
                if pm.returncode != 0:
                    raise SystemExit(f"child run failed:\n{pm.stderr[-2000:]}")
                info = json.loads(pm.stdout.strip().splitlines()[-1])
                peaks.setdefault((method, n), []).append(pm.peak_rss / 2**20)
    k_mb = info["key_parameters"] * 4 / 2**20
    print(f"2. peak RSS ({a.memory_preset} model, {info['parameters']:,} parameters, "
          f"K = {info['key_parameters']:,} = {k_mb:.2f} MB; {MEMORY_DOCS} documents; "
          f"{a.memory_repeats} repeat(s), median [range])")
    for n in MEMORY_LEAVES:
        cells = []
        for method in ("fl", "worldlm"):
            v = peaks[(method, n)]
            cells.append(f"{method} {statistics.median(v):7.1f} MB "
                         f"[{min(v):.1f}-{max(v):.1f}]")
        ratio = statistics.median(peaks[("worldlm", n)]) / statistics.median(peaks[("fl", n)])
        print(f"   {n:3d} leaves: " + "   ".join(cells) + f"   worldlm/fl {ratio:.3f}")
    lo, hi = MEMORY_LEAVES[0], MEMORY_LEAVES[-1]
    per_leaf = {m: (statistics.median(peaks[(m, hi)]) - statistics.median(peaks[(m, lo)]))
                / (hi - lo) for m in ("fl", "worldlm")}
    print(f"   MB per extra leaf: worldlm {per_leaf['worldlm']:.2f}, fl {per_leaf['fl']:.2f} "
          f"(one copy of K = {k_mb:.2f} MB)")
    return {"peaks_mb": {f"{m}/{n}": v for (m, n), v in peaks.items()},
            "mb_per_leaf": per_leaf, "k_mb": k_mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="timed pairs (throughput)")
    p.add_argument("--preset", default="tiny", help="model preset for the throughput part")
    p.add_argument("--memory-preset", default="mini", help="model preset for the memory part "
                   "(larger than tiny so that K copies stand out of the noise)")
    p.add_argument("--memory-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", choices=("throughput", "memory"), default=None)
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child)
        return
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        if a.only in (None, "throughput"):
            out["throughput"] = throughput(a, Path(d))
        if a.only in (None, "memory"):
            out["memory"] = memory(a, Path(d))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
