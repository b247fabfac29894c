"""FedAvg simulation speed against Flower's simulation engine, the same workload in the same run.

Optional packages (the ``peers`` extra, not part of ``all``; a separate environment keeps
Ray out of yours):

    pip install torch==2.13.0 -e ".[fl,peers]"

(measured with flwr 1.42.0 and Ray 2.55.1). Then:

    python benchmarks/peers/flower_sim.py [--cohorts 8 64] [--rounds 6] [--repeats 2]

The workload is one config (``make_config``): the tiny transformer preset, the Python
standard library grouped by package (``stdlib:`` source), a BPE tokenizer trained once and
loaded by both sides, FedAvg weighted by tokens with Adam on the clients (``local_steps``
steps of ``batch_size`` sequences of ``seq_len`` tokens), server SGD lr 1 (plain averaging),
no evaluation. Both sides train **the same clients in every round**: Flower's ServerApp
uses Flower's own ``FedAvg`` strategy (its sampling, messages and weighted averaging of the
returned arrays) and only tells each sampled node which group of the cohort
``fedgroups.fl.federation.cohort_keys`` draws for that round to train, with that position's
seed. Each Flower ClientApp reads its group from the same grouped dataset, tokenizes it
and trains it with fedgroups' own client loop (``client_update``), so the computation per
client is identical and what differs is the simulation engine around it. As a check the
run compares the two final global models (they agree to float tolerance) and the tokens
trained per round (equal).

Flower is given what helps it: one Ray actor per core (``client_resources.num_cpus`` 1;
Flower's default of 2 would run one client at a time on this 2-core machine), the dataset,
tokenizer and model kept per actor between calls (a ClientApp is otherwise stateless), torch
at one intra-op thread like fedgroups' ``run.threads: 1``. fedgroups runs its default
sequential backend (one process, one client at a time).

Each side runs in a fresh process; reported per side: rounds/s and trained tokens/s over
the rounds after the first (steady state: Ray's actors start during Flower's first round),
the same over all rounds, the process's whole wall time (start to exit, Ray's start-up
included), CPU seconds of the process tree, and its peak RSS (sum over the process tree,
sampled every 50 ms; Ray's shared-memory object store pages count once per process that
maps them, so Flower's figure is an upper bound). The two sides alternate, in alternating
order, ``--repeats`` times per cohort size; the ratio of each pair is reported with its range.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import PeakMemory  # noqa: E402

# ----------------------------------------------------------------------------- the workload


def make_config(data: str, tokenizer: str, out: str, cohort: int, rounds: int,
                a: argparse.Namespace) -> dict[str, Any]:
    return {
        "data": {"path": data, "text_column": "text", "split": {"train": 0.9, "test": 0.1},
                 "split_seed": 0, "use_split": "train"},
        "tokenizer": {"path": tokenizer},
        "model": {"preset": "tiny", "seq_len": a.seq_len},
        "algorithm": {"name": "fedavg", "weighting": "tokens"},
        "client": {"optimizer": a.client_optimizer, "lr": 3e-3 if a.client_optimizer == "adam"
                   else 0.3, "local_steps": a.local_steps,
                   "batch_size": a.batch_size, "max_sequences": a.max_sequences,
                   "grad_clip_norm": 1.0},
        "server": {"optimizer": "sgd", "lr": 1.0},
        "eval": {"every": 0, "datasets": []},
        "rounds": rounds, "cohort_size": cohort, "seed": 0, "output_dir": out,
        "run": {"threads": 1, "client_threads": a.client_threads, "checkpoint_every": 10_000,
                "progress": False},
    }


def prepare(work: Path) -> tuple[str, str]:
    """The grouped dataset and a tokenizer folder, made once (reused when present)."""
    import fedgroups as fg
    from fedgroups.fl.config import DatasetConfig
    from fedgroups.fl.datasets import open_source
    from fedgroups.fl.tokenizer import EOS, sample_texts, train_bpe

    data = work / "stdlib"
    if not (data / ".fedgroups" / "manifest.json").exists():
        fg.build("stdlib:", "field:package", str(data), progress=False, overwrite=True)
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        src = open_source(DatasetConfig(path=str(data)), "data")
        tok = train_bpe(sample_texts(src, "text", groups=64, examples=4000, seed=0),
                        vocab_size=1024, eos_token=EOS)
        tok_dir.mkdir(parents=True, exist_ok=True)
        tok.save(str(tok_dir / "tokenizer.json"))
    return str(data), str(tok_dir)


# ------------------------------------------------------------------------ fedgroups' side


def run_fedgroups(config_path: str, result_path: str) -> None:
    import torch

    from fedgroups.fl.config import parse_config
    from fedgroups.fl.simulation import run

    cfg = parse_config(yaml.safe_load(Path(config_path).read_text()))
    res = run(cfg, echo=lambda *_: None)
    torch.save({n: p.detach().clone() for n, p in res.model.named_parameters()},
               str(Path(result_path).with_suffix(".pt")))
    rounds = [{"seconds": r["seconds"], "tokens": r["tokens"]} for r in res.rows]
    Path(result_path).write_text(json.dumps({"rounds": rounds}))


# --------------------------------------------------------------------------- Flower's side

_ACTOR: dict[str, Any] = {}  # per Ray actor process: what a call can reuse


def _client_state(config_path: str) -> dict[str, Any]:
    """Config, dataset, tokenizer and a model, made once per actor process."""
    if _ACTOR.get("path") != config_path:
        import torch

        from fedgroups.fl.config import parse_config
        from fedgroups.fl.datasets import open_source
        from fedgroups.fl.model_factory import make_model
        from fedgroups.fl.tokenizer import EOS, open_tokenizer

        torch.set_num_threads(1)
        cfg = parse_config(yaml.safe_load(Path(config_path).read_text()))
        tok, eos = open_tokenizer(cfg.tokenizer.path or "", cfg.tokenizer.eos_token or EOS)
        model, _ = make_model(cfg.model, tok.get_vocab_size(), cfg.seed, None)
        _ACTOR.update(path=config_path, cfg=cfg, source=open_source(cfg.data, "data"),
                      tok=tok, eos_id=tok.token_to_id(eos), model=model)
    return _ACTOR


def flower_train(msg: Any, context: Any) -> Any:
    """The ClientApp's train handler: client ``key`` of the cohort, fedgroups' client loop."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    from fedgroups.fl.algorithms import client_update
    from fedgroups.fl.client_data import pack_client

    conf = msg.content["config"]
    st = _client_state(str(conf["config-path"]))
    cfg, model = st["cfg"], st["model"]
    start = msg.content["arrays"].to_torch_state_dict()
    model.load_state_dict(start)
    key = st["source"].keys[int(conf["key-index"])]
    data = pack_client(st["source"].group(key), st["tok"], text_column=cfg.data.text_column,
                       seq_len=cfg.model.seq_len, max_sequences=cfg.client.max_sequences,
                       eos_id=st["eos_id"])
    if data.num_sequences < cfg.client.min_sequences:  # skipped, as fedgroups skips it
        return Message(content=RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                           "metrics": MetricRecord({"num-examples": 0.0,
                                                                    "loss-tokens": 0.0})}),
                       reply_to=msg)
    seed = int(conf["client-seed"])
    names = [n for n, _ in model.named_parameters()]
    params = {n: t for n, t in start.items() if n in names}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        up = client_update(model, data, cfg.client, "fedavg", start=params, aggregated=names,
                           generator=torch.Generator().manual_seed(seed))
    metrics = MetricRecord({"num-examples": float(up.weight("tokens")),
                            "loss-tokens": float(up.loss_tokens)})
    return Message(content=RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                       "metrics": metrics}), reply_to=msg)


def run_flower(config_path: str, result_path: str, cpus_per_client: float) -> None:
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.serverapp.strategy.strategy_utils import sample_nodes
    from flwr.simulation import run_simulation

    from fedgroups.fl.config import parse_config
    from fedgroups.fl.datasets import open_source
    from fedgroups.fl.federation import client_seed, cohort_keys
    from fedgroups.fl.model_factory import make_model
    from fedgroups.fl.tokenizer import EOS, open_tokenizer

    torch.set_num_threads(1)
    cfg = parse_config(yaml.safe_load(Path(config_path).read_text()))
    source = open_source(cfg.data, "data")
    index = {k: i for i, k in enumerate(source.keys)}
    tok, _ = open_tokenizer(cfg.tokenizer.path or "", cfg.tokenizer.eos_token or EOS)
    init, _ = make_model(cfg.model, tok.get_vocab_size(), cfg.seed, None)
    rounds: list[dict[str, float]] = []

    class SameCohortFedAvg(FedAvg):
        """Flower's FedAvg; each sampled node is told which client of fedgroups' cohort to
        train (and that position's seed), so both simulators train the same clients."""

        def configure_train(self, server_round: int, arrays: ArrayRecord,
                            config: ConfigRecord, grid: Any) -> list[Message]:
            self._t0 = time.perf_counter()
            r = server_round - 1  # fedgroups counts rounds from 0
            keys = cohort_keys(source.keys, cfg.cohort_size, cfg.seed, r)
            nodes, _ = sample_nodes(grid, self.min_available_nodes, len(keys))
            return [Message(content=RecordDict({"arrays": arrays, "config": ConfigRecord({
                "config-path": config_path, "key-index": index[k],
                "client-seed": client_seed(cfg.seed, r, pos), "server-round": server_round})}),
                message_type=MessageType.TRAIN, dst_node_id=node)
                for pos, (k, node) in enumerate(zip(keys, nodes))]

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            out = super().aggregate_train(server_round, replies)
            tokens = sum(float(m.content["metrics"]["loss-tokens"]) for m in replies
                         if not m.has_error())
            errors = [m.error.reason for m in replies if m.has_error()]
            if errors:
                raise RuntimeError(f"Flower client failed: {errors[0]}")
            rounds.append({"seconds": time.perf_counter() - self._t0, "tokens": tokens})
            return out

    final: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Any, context: Any) -> None:
        strategy = SameCohortFedAvg(fraction_train=0.0001, fraction_evaluate=0.0,
                                    min_train_nodes=cfg.cohort_size,
                                    min_available_nodes=cfg.cohort_size)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(init.state_dict()),
                                num_rounds=cfg.rounds)
        final["state"] = result.arrays.to_torch_state_dict()

    client = ClientApp()
    client.train()(flower_train)
    run_simulation(server_app=server, client_app=client,
                   num_supernodes=max(len(source.keys), cfg.cohort_size),
                   backend_config={"client_resources": {"num_cpus": cpus_per_client,
                                                        "num_gpus": 0.0}})
    if "state" not in final:
        raise RuntimeError("the Flower simulation ended without a final model (see its log)")
    names = {n for n, _ in init.named_parameters()}
    torch.save({n: t for n, t in final["state"].items() if n in names},
               str(Path(result_path).with_suffix(".pt")))
    Path(result_path).write_text(json.dumps({"rounds": rounds}))


# ---------------------------------------------------------------------------- measuring


def measure(cmd: list[str]) -> dict[str, float]:
    """Wall time, CPU time and peak RSS of ``cmd``'s whole process tree."""
    with PeakMemory(pid_command=cmd) as mem:
        pass
    if mem.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({mem.returncode}):\n{mem.stderr[-4000:]}")
    return {"wall": mem.wall, "cpu": mem.cpu_seconds, "peak_rss": mem.peak_rss}


def summarise(result_path: Path, proc: dict[str, float]) -> dict[str, float]:
    rounds = json.loads(result_path.read_text())["rounds"]
    steady = rounds[1:] or rounds
    sec = sum(r["seconds"] for r in steady)
    return {"rounds_per_s": len(steady) / sec, "tokens_per_s": sum(r["tokens"] for r in steady) / sec,
            "tokens_per_s_all": sum(r["tokens"] for r in rounds) / sum(r["seconds"] for r in rounds),
            "tokens": [r["tokens"] for r in rounds], **proc}


def one(side: str, work: Path, data: str, tok: str, cohort: int, rounds: int,
        a: argparse.Namespace, rep: int) -> dict[str, Any]:
    out = work / f"{side}-c{cohort}-r{rep}"
    shutil.rmtree(out, ignore_errors=True)  # a run directory from an earlier invocation
    cfg_path = work / f"{side}-c{cohort}-r{rep}.yaml"
    cfg_path.write_text(yaml.safe_dump(make_config(data, tok, str(out), cohort, rounds, a)))
    result = work / f"{side}-c{cohort}-r{rep}.json"
    cmd = [sys.executable, __file__, "--side", side, "--config", str(cfg_path),
           "--result", str(result), "--cpus-per-client", str(a.cpus_per_client)]
    return summarise(result, measure(cmd))


def compare_models(work: Path, cohort: int, rep: int) -> float:
    import torch

    a = torch.load(str(work / f"fedgroups-c{cohort}-r{rep}.pt"))
    b = torch.load(str(work / f"flower-c{cohort}-r{rep}.pt"))
    if a.keys() != b.keys():
        raise SystemExit(f"the two final models have different parameters: {a.keys() ^ b.keys()}")
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def span(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}x ({min(xs):.2f}-{max(xs):.2f})" if len(xs) > 1 \
        else f"{xs[0]:.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohorts", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--rounds", type=int, default=6, help="rounds per run (the first is "
                    "warm-up: steady-state figures use the others)")
    ap.add_argument("--repeats", type=int, default=2, help="pairs of runs per cohort size")
    ap.add_argument("--local-steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-sequences", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--client-optimizer", choices=["adam", "sgd"], default="adam",
                    help="sgd: the two final models then agree to ~1e-6 (Adam's normalised "
                    "steps amplify float rounding differences in near-zero gradients)")
    ap.add_argument("--cpus-per-client", type=float, default=1.0,
                    help="Flower's client_resources.num_cpus (its default is 2)")
    ap.add_argument("--client-threads", type=int, default=os.cpu_count() or 1,
                    help="fedgroups' run.client_threads (default: one per core, as Flower "
                    "gets one actor per core)")
    ap.add_argument("--workdir", help="keep the dataset and tokenizer here between runs")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--side", choices=["fedgroups", "flower"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side == "fedgroups":
        return run_fedgroups(a.config, a.result)
    if a.side == "flower":
        return run_flower(a.config, a.result, a.cpus_per_client)
    try:
        import flwr
        import ray
    except ImportError:
        raise SystemExit('Flower is not installed: pip install -e ".[fl,peers]" (or '
                         '"flwr[simulation]>=1.20"); see this script\'s docstring') from None
    work = Path(a.workdir or tempfile.mkdtemp(prefix="fedgroups-flower-"))
    work.mkdir(parents=True, exist_ok=True)
    data, tok = prepare(work)
    print(f"flwr {flwr.__version__}, ray {ray.__version__}; {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}; tiny preset, local_steps {a.local_steps}, batch "
          f"{a.batch_size}x{a.seq_len}, {a.rounds} rounds; Flower: "
          f"{a.cpus_per_client:g} CPU per client; fedgroups: run.client_threads "
          f"{a.client_threads}", flush=True)
    report: dict[str, Any] = {"flwr": flwr.__version__, "ray": ray.__version__, "runs": []}
    for cohort in a.cohorts:
        pairs = []
        for rep in range(a.repeats):
            order = ["fedgroups", "flower"] if rep % 2 == 0 else ["flower", "fedgroups"]
            got = {s: one(s, work, data, tok, cohort, a.rounds, a, rep) for s in order}
            diff = compare_models(work, cohort, rep)
            same_tokens = got["fedgroups"]["tokens"] == got["flower"]["tokens"]
            pairs.append(got)
            report["runs"].append({"cohort": cohort, "rep": rep, **got,
                                   "max_param_diff": diff, "same_tokens": same_tokens,
                                   "load": os.getloadavg()[0]})
            for s in ("fedgroups", "flower"):
                g = got[s]
                print(f"cohort {cohort:3d} run {rep}: {s:9s} {g['rounds_per_s']:6.3f} rounds/s "
                      f"{g['tokens_per_s']:9,.0f} tokens/s (all rounds {g['tokens_per_s_all']:9,.0f}); "
                      f"process {g['wall']:5.1f} s wall, {g['cpu']:5.1f} s CPU, peak RSS "
                      f"{g['peak_rss'] / 2**20:6,.0f} MiB", flush=True)
            print(f"           same tokens per round: {same_tokens}; final models differ by "
                  f"at most {diff:.2e}; load {os.getloadavg()[0]:.1f}", flush=True)
        r_tok = [p["fedgroups"]["tokens_per_s"] / p["flower"]["tokens_per_s"] for p in pairs]
        r_all = [p["fedgroups"]["tokens_per_s_all"] / p["flower"]["tokens_per_s_all"]
                 for p in pairs]
        r_wall = [p["flower"]["wall"] / p["fedgroups"]["wall"] for p in pairs]
        r_cpu = [p["flower"]["cpu"] / p["fedgroups"]["cpu"] for p in pairs]
        mem = [p["flower"]["peak_rss"] / p["fedgroups"]["peak_rss"] for p in pairs]
        print(f"cohort {cohort}: fedgroups / Flower tokens/s {span(r_tok)} steady, {span(r_all)} "
              f"all rounds (target >= 2); whole process {span(r_wall)} faster, {span(r_cpu)} "
              f"less CPU; Flower's peak RSS {span(mem)} fedgroups'", flush=True)
    by = {c: [r for r in report["runs"] if r["cohort"] == c] for c in a.cohorts}
    if len(a.cohorts) > 1:
        lo, hi = min(a.cohorts), max(a.cohorts)
        for s in ("fedgroups", "flower"):
            grow = statistics.median(r[s]["peak_rss"] for r in by[hi]) / \
                statistics.median(r[s]["peak_rss"] for r in by[lo])
            print(f"{s}: peak RSS at cohort {hi} / cohort {lo}: {grow:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
