"""Federated simulation overhead, measured against baselines in the same run.

1. Throughput: FedAvg simulation tokens/s over plain centralized training tokens/s.  Both
   train the same model (same init) with the same client optimizer, batch size, batches and
   number of steps per client, on the same tokens; centralized keeps one model and one
   optimizer, FedAvg restarts every client from the global weights and aggregates.  Two
   comparisons:

   * ``compute``: both sides read the same pre-packed client tensors (data pipeline
     excluded on both sides);
   * ``end-to-end``: both sides read and tokenize every client's group through the same
     pipeline (``pack_client``) every time (data pipeline included on both sides).

   Each comparison is warmed up (one untimed round of each side), then repeated in
   alternating order (A B, B A, A B, ...); the reported ratio is the median of the
   per-pair ratios, for wall time and for CPU time (``time.process_time``: less sensitive
   to other jobs on a shared machine).  Target: ratio >= 0.9.
2. Memory: peak RSS of cohort 8 vs cohort 128 for the same number of rounds, each in a
   fresh process, sampled every 5 ms by a thread; the tokenizer is trained once in the
   parent and loaded by the children so that only the rounds are measured.
   Target: within 10% (the aggregate is a running sum; clients train one at a time).

    python benchmarks/train.py [--rounds 4] [--cohort 8] [--local-steps 8] [--repeats 5]

``--threads`` (default 1) is set identically for both sides: at these model sizes torch's
intra-op threads cost more than they give, and on a shared machine they make timings erratic.
The data is the Python standard library grouped by package (``stdlib:`` source), built into
a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fedgroups.fl.algorithms import make_optimizer
from fedgroups.fl.backends import SequentialBackend
from fedgroups.fl.client_data import ClientData, iter_batches, pack_client
from fedgroups.fl.config import TrainConfig, parse_config
from fedgroups.fl.datasets import GroupSource, open_source
from fedgroups.fl.federation import Federation, client_seed, cohort_keys
from fedgroups.fl.model import ModelArgs, build_model
from fedgroups.fl.simulation import model_args
from fedgroups.fl.tokenizer import EOS, load_tokenizer, sample_texts, train_bpe

Packer = Callable[[Any], ClientData]


def build_data(root: Path) -> str:
    from fedgroups.engine.api import build

    out = root / "stdlib"
    build("stdlib:", "field:package", str(out), progress=False)
    return str(out)


def make_config(data: str, a: argparse.Namespace, cohort: int, rounds: int,
                local_steps: int) -> TrainConfig:
    return parse_config({
        "data": {"path": data}, "output_dir": "unused", "rounds": rounds,
        "cohort_size": cohort, "seed": 0,
        "model": {"preset": a.preset, "seq_len": a.seq_len},
        "client": {"optimizer": "adam", "lr": 1e-3, "local_steps": local_steps,
                   "batch_size": a.batch_size, "max_sequences": a.max_sequences,
                   "min_sequences": a.batch_size},
    })


class Setup:
    """Dataset, tokenizer and model shape shared by both sides."""

    def __init__(self, cfg: TrainConfig, tokenizer_path: str) -> None:
        self.source: GroupSource = open_source(cfg.data, "data")
        self.tok = load_tokenizer(tokenizer_path)
        self.eos = self.tok.token_to_id(EOS)
        self.args: ModelArgs = model_args(cfg.model, self.tok.get_vocab_size())

    def packer(self, cfg: TrainConfig) -> Packer:
        def pack(key: Any) -> ClientData:
            return pack_client(self.source.group(key), self.tok, text_column="text",
                               seq_len=cfg.model.seq_len,
                               max_sequences=cfg.client.max_sequences, eos_id=self.eos)
        return pack

    def cached_packer(self, cfg: TrainConfig) -> Packer:
        pack = self.packer(cfg)
        keys = {k for r in range(cfg.rounds)
                for k in cohort_keys(self.source.keys, cfg.cohort_size, cfg.seed, r)}
        cache = {k: pack(k) for k in keys}
        return cache.__getitem__


def fedavg(cfg: TrainConfig, s: Setup, pack: Packer) -> tuple[float, float, float]:
    fed = Federation(model=build_model(s.args, 0), source=s.source, tokenizer=s.tok,
                     eos_id=s.eos, config=cfg, backend=SequentialBackend())
    fed.client_data = pack  # type: ignore[method-assign]
    tokens, t0, c0 = 0.0, time.perf_counter(), time.process_time()
    for r in range(cfg.rounds):
        tokens += fed.run_round(r)["tokens"]
    return tokens, time.perf_counter() - t0, time.process_time() - c0


def centralized(cfg: TrainConfig, s: Setup, pack: Packer) -> tuple[float, float, float]:
    """One model, one optimizer; the same clients' batches and steps, back to back."""
    model = build_model(s.args, 0)
    opt = make_optimizer(model.parameters(), cfg.client)
    tokens, t0, c0 = 0, time.perf_counter(), time.process_time()
    for r in range(cfg.rounds):
        for pos, key in enumerate(cohort_keys(s.source.keys, cfg.cohort_size, cfg.seed, r)):
            data = pack(key)
            if data.num_sequences < cfg.client.min_sequences:
                continue
            gen = torch.Generator().manual_seed(client_seed(cfg.seed, r, pos))
            steps = 0
            while steps < cfg.client.local_steps:
                for batch in iter_batches(data.sequences, cfg.client.batch_size, gen):
                    loss = model.loss(batch)
                    loss.item()  # the simulation checks every loss for finiteness too
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    tokens += batch.shape[0] * (batch.shape[1] - 1)
                    steps += 1
                    if steps >= cfg.client.local_steps:
                        break
    return float(tokens), time.perf_counter() - t0, time.process_time() - c0


def compare(name: str, cfg: TrainConfig, s: Setup, pack: Packer, repeats: int) -> str:
    warm = replace(cfg, rounds=1)
    centralized(warm, s, pack)
    fedavg(warm, s, pack)
    pairs = []
    for i in range(repeats):
        if i % 2 == 0:
            c, f = centralized(cfg, s, pack), fedavg(cfg, s, pack)
        else:
            f, c = fedavg(cfg, s, pack), centralized(cfg, s, pack)
        if c[0] != f[0]:
            raise AssertionError(f"both must train on the same tokens: {c[0]} vs {f[0]}")
        pairs.append((c, f))
    tokens = pairs[0][0][0]

    def med(values: Any) -> float:
        return statistics.median(list(values))

    wall = [c[1] / f[1] for c, f in pairs]
    cpu = [c[2] / f[2] for c, f in pairs]
    return (
        f"{name:<11} {tokens:>8.0f} {med(tokens / c[1] for c, _ in pairs):>8.0f} "
        f"{med(tokens / f[1] for _, f in pairs):>8.0f} {med(wall):>6.3f} "
        f"[{min(wall):.2f}-{max(wall):.2f}] {med(tokens / c[2] for c, _ in pairs):>8.0f} "
        f"{med(tokens / f[2] for _, f in pairs):>8.0f} {med(cpu):>6.3f} "
        f"[{min(cpu):.2f}-{max(cpu):.2f}]"
    )


def rss_child(a: argparse.Namespace) -> None:
    import psutil

    proc = psutil.Process()
    cfg = make_config(a.data, a, a.cohort, a.rss_rounds, 1)
    s = Setup(cfg, a.tokenizer)
    fed = Federation(model=build_model(s.args, 0), source=s.source, tokenizer=s.tok,
                     eos_id=s.eos, config=cfg, backend=SequentialBackend())
    base = proc.memory_info().rss
    peak, done = [base], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    clients = 0.0
    for r in range(cfg.rounds):
        clients += fed.run_round(r)["clients"]
    done.set()
    sampler.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    print(json.dumps({"cohort": a.cohort, "base_mb": base / 2**20, "peak_mb": peak[0] / 2**20,
                      "clients": clients}))


def rss(a: argparse.Namespace, data: str, tokenizer: str, cohort: int, rounds: int
        ) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--rss-child", "--data", data, "--tokenizer", tokenizer,
           "--cohort", str(cohort), "--rss-rounds", str(rounds),
           "--batch-size", str(a.batch_size), "--seq-len", str(a.seq_len),
           "--max-sequences", str(a.max_sequences), "--preset", a.preset,
           "--threads", str(a.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--cohort", type=int, default=8)
    p.add_argument("--local-steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--max-sequences", type=int, default=64)
    p.add_argument("--preset", default="mini")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rss-rounds", type=int, default=2)
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.rss_child:
        rss_child(a)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(Path(tmp))
        cfg = make_config(data, a, a.cohort, a.rounds, a.local_steps)
        source = open_source(cfg.data, "data")
        tok_path = str(Path(tmp) / "tokenizer.json")
        train_bpe(sample_texts(source, "text", groups=32, examples=3000, seed=0),
                  vocab_size=2048).save(tok_path)
        s = Setup(cfg, tok_path)
        print(f"model {s.args}\n{a.rounds} rounds x cohort {a.cohort} x {a.local_steps} steps "
              f"x batch {a.batch_size} x seq {a.seq_len}; {a.threads} thread(s); "
              f"{a.repeats} alternating repeats after a warm-up")
        print(f"{'':<20} {'tokens/s (wall)':^35} {'tokens per CPU second':^35}")
        print(f"{'data':<11} {'tokens':>8} {'central':>8} {'fedavg':>8} {'ratio [min-max]':>17} "
              f"{'central':>8} {'fedavg':>8} {'ratio [min-max]':>17}")
        print(compare("compute", cfg, s, s.cached_packer(cfg), a.repeats))
        print(compare("end-to-end", cfg, s, s.packer(cfg), a.repeats))
        print("tok/s: median per side; ratio = fedavg / centralized, median over alternating "
              "pairs; target >= 0.9")
        if a.skip_rss:
            return
        runs = [(8, a.rss_rounds), (128, a.rss_rounds), (8, a.rss_rounds * 16)]
        res = [rss(a, data, tok_path, c, r) for c, r in runs]
        print(f"{'peak RSS':<20} {'clients':>8} {'after setup':>12} {'peak':>9}")
        for (c, r), x in zip(runs, res):
            print(f"cohort {c:>3} x {r:>2} rounds {x['clients']:>8.0f} {x['base_mb']:>9.1f} MB "
                  f"{x['peak_mb']:>6.1f} MB")
        print(f"peak ratio cohort 128 / cohort 8 ({a.rss_rounds} rounds): "
              f"{res[1]['peak_mb'] / res[0]['peak_mb']:.3f}   target <= 1.10")


if __name__ == "__main__":
    main()
