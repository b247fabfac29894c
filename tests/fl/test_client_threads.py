"""run.client_threads: clients of a cohort trained in threads give the same run, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fl_testkit import make_records, tiny_config

from fedgroups.fl.config import parse_config
from fedgroups.fl.errors import ConfigError
from fedgroups.fl.simulation import run

TIMINGS = ("seconds", "tokens_per_s")


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


@pytest.mark.parametrize("over", [
    {},
    # local parameters kept per client, Adam on both sides, clients too small to train
    {"algorithm.local_params": ["blocks.1.mlp.*"], "client.optimizer": "adam",
     "client.lr": 0.01, "server.optimizer": "adam", "server.lr": 0.01,
     "client.min_sequences": 4},
    # differential privacy: the noise is drawn in aggregation order
    {"strategy.processors": [{"name": "dp", "clip_norm": 0.5, "noise_multiplier": 0.3}],
     "algorithm.weighting": "uniform"},
])
def test_threads_give_the_same_run_bit_for_bit(make_dataset, tmp_path: Path, over: dict) -> None:
    data = make_dataset(make_records(24, min_ex=1))
    base = {"rounds": 4, "cohort_size": 7, "eval.every": 2, **over}
    one = run(parse_config(tiny_config(data, str(tmp_path / "one"), **base)),
              echo=lambda m: None)
    three = run(parse_config(tiny_config(data, str(tmp_path / "three"), **base,
                                         **{"run.client_threads": 3})), echo=lambda m: None)
    assert _rows(one.rows) == _rows(three.rows)
    if "client.min_sequences" in over:
        assert sum(r["skipped"] for r in one.rows) > 0  # the skip path was exercised
    a, b = one.model.state_dict(), three.model.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    ca = torch.load(sorted((one.run_dir / "checkpoints").iterdir())[-1], weights_only=False)
    cb = torch.load(sorted((three.run_dir / "checkpoints").iterdir())[-1], weights_only=False)
    assert ca["local_store"].keys() == cb["local_store"].keys()
    for key, params in ca["local_store"].items():
        assert all(torch.equal(t, cb["local_store"][key][n]) for n, t in params.items())


def test_a_client_error_in_a_thread_reaches_the_caller(make_dataset, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from fedgroups.fl import federation

    data = make_dataset(make_records(12))
    calls = {"n": 0}
    real = federation.pack_client

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(federation, "pack_client", flaky)
    cfg = parse_config(tiny_config(data, str(tmp_path / "r"), **{"run.client_threads": 2}))
    with pytest.raises(RuntimeError, match="disk went away"):
        run(cfg, echo=lambda m: None)


def test_a_model_with_dropout_is_refused(make_dataset, tmp_path: Path) -> None:
    from fedgroups.fl.model import ModelArgs, build_model

    def with_dropout(vocab_size: int, seq_len: int) -> torch.nn.Module:
        model = build_model(ModelArgs(vocab_size=vocab_size, seq_len=seq_len, d_model=32,
                                      n_layers=1, n_heads=2, d_ff=64), 0)
        model.drop = torch.nn.Dropout(0.1)
        return model

    data = make_dataset(make_records(8))
    cfg = parse_config(tiny_config(data, str(tmp_path / "r"), **{"run.client_threads": 2}))
    with pytest.raises(ConfigError, match=r"run.client_threads 2: the model has dropout \(drop"):
        run(cfg, echo=lambda m: None, model_factory=with_dropout)


def test_client_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="run.client_threads must be >= 1"):
        parse_config(tiny_config("x", "y", **{"run.client_threads": 0}))
