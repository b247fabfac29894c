"""Helpers for tests/fl: small records, an in-memory dataset stand-in, a tiny config.

A plain module (not ``conftest``) so tests import it by a name no other test folder uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "red", "green", "blue", "cyan", "magenta", "yellow", "black", "white", "def", "class", "return", "import", "for", "while", "if", "else"]


def make_records(num_users: int = 16, seed: int = 0, min_ex: int = 8, max_ex: int = 30
                 ) -> list[dict[str, Any]]:
    """Users writing short texts; each user prefers a few words (so personalization helps)."""
    rng = np.random.default_rng(seed)
    records = []
    for u in range(num_users):
        favourite = rng.choice(len(WORDS), size=4, replace=False)
        for _ in range(int(rng.integers(min_ex, max_ex + 1))):
            n = int(rng.integers(6, 20))
            idx = np.where(rng.random(n) < 0.6, rng.choice(favourite, size=n),
                           rng.integers(0, len(WORDS), size=n))
            records.append({"user": f"user{u:03d}", "text": " ".join(WORDS[i] for i in idx)})
    return records


class MemoryGroup:
    def __init__(self, key: str, examples: list[dict[str, Any]]) -> None:
        self.key = key
        self.examples = examples
        self.num_examples = len(examples)

    def __iter__(self) -> Any:
        return iter(self.examples)


class MemoryDataset:
    def __init__(self, groups: dict[str, list[dict[str, Any]]]) -> None:
        self._groups = groups

    def keys(self) -> list[str]:
        return sorted(self._groups)

    def group(self, key: str) -> MemoryGroup:
        return MemoryGroup(key, self._groups[key])

    def split_groups(self, fractions: dict[str, float], seed: int = 0) -> dict[str, Any]:
        keys = self.keys()
        order = np.random.default_rng(seed).permutation(len(keys))
        out, start, total = {}, 0, sum(fractions.values())
        names = list(fractions)
        for i, name in enumerate(names):
            end = len(keys) if i == len(names) - 1 else start + round(
                len(keys) * fractions[name] / total)
            out[name] = MemoryDataset({keys[j]: self._groups[keys[j]] for j in order[start:end]})
            start = end
        return out


def real_reader() -> bool:
    try:
        from fedgroups.engine.api import build  # noqa: F401
        from fedgroups.reader.dataset import open  # noqa: F401
    except ImportError:
        return False
    return True


def tiny_config(data_path: str, out: str, **over: Any) -> dict[str, Any]:
    """A config dict for a seconds-long run on ``make_records`` data."""
    cfg: dict[str, Any] = {
        "data": {"path": data_path, "split": {"train": 0.75, "test": 0.25},
                 "use_split": "train"},
        "output_dir": out,
        "rounds": 4,
        "cohort_size": 4,
        "seed": 0,
        "tokenizer": {"vocab_size": 300, "sample_groups": 8, "sample_examples": 400},
        "model": {"preset": "tiny", "seq_len": 16, "d_model": 32, "n_heads": 2},
        "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 4, "batch_size": 4,
                   "max_sequences": 16},
        "server": {"optimizer": "sgd", "lr": 1.0},
        "eval": {"datasets": [{"name": "heldout", "path": data_path,
                               "split": {"train": 0.75, "test": 0.25}, "use_split": "test",
                               "max_clients": 4}],
                 "max_sequences": 8, "batch_size": 8},
        "personalization": {"lr": 0.3, "steps": 3, "batch_size": 2},
        "run": {"progress": False, "checkpoint_every": 2, "threads": 1},
    }
    for k, v in over.items():
        node = cfg
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return cfg


def memory_federation(config: Any, *, strategy: Any = None, backend: Any = None,
                      users: int = 8, d_model: int = 32, n_layers: int = 2,
                      d_ff: int = 64) -> Any:
    """A ``Federation`` over ``users`` in-memory users (records of seed 3), a BPE tokenizer
    of 280 tokens trained on them and a small transformer (seed 5): seconds-long rounds
    for tests that drive ``Federation.run_round`` themselves."""
    from fedgroups.fl.backends import SequentialBackend
    from fedgroups.fl.datasets import GroupSource
    from fedgroups.fl.federation import Federation
    from fedgroups.fl.model import ModelArgs, build_model
    from fedgroups.fl.tokenizer import EOS, train_bpe

    recs = make_records(users, seed=3)
    groups: dict[str, list] = {}
    for r in recs:
        groups.setdefault(r["user"], []).append(r)
    ds = MemoryDataset(groups)
    tok = train_bpe([r["text"] for r in recs], vocab_size=280)
    args = ModelArgs(vocab_size=tok.get_vocab_size(), seq_len=16, d_model=d_model,
                     n_layers=n_layers, n_heads=2, d_ff=d_ff)
    return Federation(model=build_model(args, 5),
                      source=GroupSource(dataset=ds, keys=tuple(ds.keys()), name="data"),
                      tokenizer=tok, eos_id=tok.token_to_id(EOS), config=config,
                      backend=backend or SequentialBackend(), strategy=strategy)


# The config of memory_federation's tests: 3 rounds of 4 clients, plain SGD on both sides.
MEMORY_BASE: dict[str, Any] = {
    "data": {"path": "x"}, "output_dir": "x", "rounds": 3, "cohort_size": 4, "seed": 5,
    "model": {"seq_len": 16},
    "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 3, "batch_size": 4,
               "max_sequences": 12},
    "server": {"optimizer": "sgd", "lr": 1.0},
}


def memory_config(over: dict[str, Any]) -> Any:
    """``MEMORY_BASE`` with dotted keys replaced (``{"algorithm.mu": 0.1}``), parsed."""
    from fedgroups.fl.config import parse_config

    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in MEMORY_BASE.items()}
    for k, v in over.items():
        node = cfg
        *head, last = k.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = v
    return parse_config(cfg)
