"""Federated simulation overhead, measured against baselines in the same run.

1. Throughput: FedAvg simulation tokens/s vs plain centralized training tokens/s, with the
   same model, batch size, client optimizer and tokens (both read and tokenize the same
   groups through the same pipeline; centralized keeps one model and one optimizer).
   Target: ratio >= 0.9.
2. Memory: peak RSS of a run with cohort 8 vs cohort 128 (each in a fresh process).
   Target: within 10% (the aggregate is a running sum; clients are trained one at a time).

    python benchmarks/train.py [--rounds 6] [--cohort 8] [--local-steps 8] [--preset mini]

The data is the Python standard library grouped by package (``stdlib:`` source), built into
a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fedgroups.fl.algorithms import make_optimizer
from fedgroups.fl.backends import SequentialBackend
from fedgroups.fl.client_data import iter_batches, pack_client
from fedgroups.fl.config import TrainConfig, parse_config
from fedgroups.fl.datasets import open_source
from fedgroups.fl.federation import Federation, client_seed, cohort_keys
from fedgroups.fl.model import build_model
from fedgroups.fl.simulation import model_args
from fedgroups.fl.tokenizer import EOS, sample_texts, train_bpe


def build_data(root: Path) -> str:
    from fedgroups.build.api import build

    out = root / "stdlib"
    build("stdlib:", "field:package", str(out), progress=False)
    return str(out)


def make_config(data: str, a: argparse.Namespace, cohort: int) -> TrainConfig:
    return parse_config({
        "data": {"path": data}, "output_dir": "unused", "rounds": a.rounds,
        "cohort_size": cohort, "seed": 0,
        "model": {"preset": a.preset, "seq_len": a.seq_len},
        "client": {"optimizer": "adam", "lr": 1e-3, "local_steps": a.local_steps,
                   "batch_size": a.batch_size, "max_sequences": a.max_sequences,
                   "min_sequences": a.batch_size},
    })


def setup(data: str, cfg: TrainConfig) -> tuple[Any, Any, int, Any]:
    source = open_source(cfg.data, "data")
    tok = train_bpe(sample_texts(source, "text", groups=32, examples=3000, seed=0),
                    vocab_size=2048)
    args = model_args(cfg.model, tok.get_vocab_size())
    return source, tok, tok.token_to_id(EOS), args


def fedavg(cfg: TrainConfig, source: Any, tok: Any, eos: int, args: Any) -> tuple[float, float]:
    model = build_model(args, 0)
    fed = Federation(model=model, source=source, tokenizer=tok, eos_id=eos, config=cfg,
                     backend=SequentialBackend())
    tokens, t0 = 0.0, time.perf_counter()
    for r in range(cfg.rounds):
        tokens += fed.run_round(r)["tokens"]
    return tokens, time.perf_counter() - t0


def centralized(cfg: TrainConfig, source: Any, tok: Any, eos: int, args: Any
                ) -> tuple[float, float]:
    """One model, one optimizer, the same clients' data and number of steps per client."""
    model = build_model(args, 0)
    opt = make_optimizer(model.parameters(), cfg.client)
    tokens, t0 = 0, time.perf_counter()
    for r in range(cfg.rounds):
        for pos, key in enumerate(cohort_keys(source.keys, cfg.cohort_size, cfg.seed, r)):
            data = pack_client(source.group(key), tok, text_column="text",
                               seq_len=cfg.model.seq_len,
                               max_sequences=cfg.client.max_sequences, eos_id=eos)
            if data.num_sequences < cfg.client.min_sequences:
                continue
            gen = torch.Generator().manual_seed(client_seed(cfg.seed, r, pos))
            steps = 0
            while steps < cfg.client.local_steps:
                for batch in iter_batches(data.sequences, cfg.client.batch_size, gen):
                    opt.zero_grad(set_to_none=True)
                    loss = model.loss(batch)
                    loss.item()  # the simulation checks every loss for finiteness too
                    loss.backward()
                    opt.step()
                    tokens += batch.shape[0] * (batch.shape[1] - 1)
                    steps += 1
                    if steps >= cfg.client.local_steps:
                        break
    return float(tokens), time.perf_counter() - t0


def rss_child(a: argparse.Namespace) -> None:
    cfg = make_config(a.data, a, a.cohort)
    source, tok, eos, args = setup(a.data, cfg)
    tokens, seconds = fedavg(cfg, source, tok, eos, args)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"cohort": a.cohort, "peak_rss_mb": peak_kb / 1024, "tokens": tokens,
                      "seconds": seconds}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--cohort", type=int, default=8)
    p.add_argument("--local-steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--max-sequences", type=int, default=64)
    p.add_argument("--preset", default="mini")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rss-rounds", type=int, default=2)
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.rss_child:
        rss_child(a)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data(Path(tmp))
        cfg = make_config(data, a, a.cohort)
        source, tok, eos, args = setup(data, cfg)
        print(f"model {args}; {a.rounds} rounds x cohort {a.cohort} x {a.local_steps} steps "
              f"x batch {a.batch_size} x seq {a.seq_len}")
        # Alternate and repeat: these machines are noisy.
        fed_runs, cen_runs = [], []
        for _ in range(2):
            cen_runs.append(centralized(cfg, source, tok, eos, args))
            fed_runs.append(fedavg(cfg, source, tok, eos, args))
        fed_tps = max(t / s for t, s in fed_runs)
        cen_tps = max(t / s for t, s in cen_runs)
        assert fed_runs[0][0] == cen_runs[0][0], "both must train on the same tokens"
        print(f"throughput  centralized {cen_tps:10.0f} tok/s   fedavg {fed_tps:10.0f} tok/s   "
              f"ratio {fed_tps / cen_tps:.3f}  (target >= 0.9)")

        peaks = {}
        for cohort in (8, 128):
            cmd = [sys.executable, __file__, "--rss-child", "--data", data,
                   "--cohort", str(cohort), "--rounds", str(a.rss_rounds),
                   "--local-steps", "1", "--batch-size", str(a.batch_size),
                   "--seq-len", str(a.seq_len), "--max-sequences", str(a.max_sequences),
                   "--preset", a.preset, "--threads", str(a.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            peaks[cohort] = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
        print(f"peak RSS    cohort 8 {peaks[8]:8.1f} MB   cohort 128 {peaks[128]:8.1f} MB   "
              f"ratio {peaks[128] / peaks[8]:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
