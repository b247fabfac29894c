"""End-to-end runs on a tiny grouped dataset built in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from fl_testkit import make_records, tiny_config

from fedgroups.fl import algorithms, cli
from fedgroups.fl.config import parse_config
from fedgroups.fl.federation import NonFiniteLossError
from fedgroups.fl.simulation import run

DETERMINISTIC = ("seconds", "tokens_per_s")


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in DETERMINISTIC} == \
               {k: v for k, v in y.items() if k not in DETERMINISTIC}


def test_tiny_model_learns_and_writes_the_run_dir(make_dataset, tmp_path: Path) -> None:
    data = make_dataset(make_records(16))
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), rounds=12,
                                   **{"eval.every": 4}))
    res = run(cfg, echo=lambda m: None)
    losses = [r["train_loss"] for r in res.rows]
    assert sum(losses[-3:]) / 3 < losses[0] - 1.0
    evals = [r["eval/heldout/loss"] for r in res.rows if "eval/heldout/loss" in r]
    assert len(evals) == 3 and evals[-1] < evals[0]
    last = res.rows[-1]
    assert last["pers/heldout/post_p50"] < last["pers/heldout/pre_p50"]  # personalization helps
    assert all(r["clients"] + r["skipped"] == 4 for r in res.rows)
    d = res.run_dir
    for name in ("config.yaml", "tokenizer.json", "metrics.jsonl", "metrics.csv",
                 "personalization.jsonl", "plots/loss.png", "plots/personalization.png"):
        assert (d / name).is_file(), name
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == \
           ["round_000010.pt", "round_000012.pt"]  # keep_checkpoints=2
    assert parse_config(yaml.safe_load((d / "config.yaml").read_text())) == cfg
    assert (d / "metrics.csv").read_text().count("\n") == 13


def test_resume_gives_the_same_metrics_and_model(make_dataset, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(make_records(16))
    over = {"rounds": 6, "eval.every": 2, "server.optimizer": "adam", "server.lr": 0.01,
            "server.schedule": {"name": "warmup_cosine", "warmup_rounds": 2},
            "client.optimizer": "adam", "client.lr": 0.01,
            "algorithm.local_params": ["blocks.1.mlp.*"]}
    full = run(parse_config(tiny_config(data, str(tmp_path / "a"), **over)), echo=print)

    from fedgroups.fl.federation import Federation

    original = Federation.run_round

    def crash_at_round_5(self, round_):
        if round_ == 4:
            raise KeyboardInterrupt
        return original(self, round_)

    cfg_b = parse_config(tiny_config(data, str(tmp_path / "b"), **over))
    monkeypatch.setattr(Federation, "run_round", crash_at_round_5)
    with pytest.raises(KeyboardInterrupt):
        run(cfg_b, echo=print)
    monkeypatch.setattr(Federation, "run_round", original)
    with pytest.raises(RuntimeError, match="already holds a run; use --resume"):
        run(cfg_b, echo=print)
    resumed = run(cfg_b, resume=True, echo=print)
    _same_rows(full.rows, resumed.rows)
    for (n, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(p, q), n


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
        make_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(make_records(16))
    calls = {"n": 0}
    original = algorithms.lm_loss

    def poisoned(model, seqs):
        calls["n"] += 1
        loss = original(model, seqs)
        return loss * float("nan") if calls["n"] > 16 * 3 else loss  # 16 steps per round

    monkeypatch.setattr(algorithms, "lm_loss", poisoned)
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), rounds=6))
    with pytest.raises(NonFiniteLossError, match=r"non-finite.*round_000002\.pt"):
        run(cfg, echo=lambda m: None)
    assert (tmp_path / "run/checkpoints/round_000002.pt").is_file()
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]  # rounds done


def test_fedsgd_run_and_cli(make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset(make_records(12))
    cfg = tiny_config(data, str(tmp_path / "run"), rounds=2, **{"server.lr": 0.5})
    assert cfg["client"]["local_steps"] == 4  # a FedAvg config, switched to FedSGD by --set
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", str(path), "--set", "rounds=3", "--set", "algorithm.name=fedsgd",
                     "--no-progress"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "round 3 (rounds done" in out and "train loss (cohort, at global weights)" in out
    assert "heldout post" in out and "loss.png" in out
    assert captured.err.count("client.local_steps is ignored") == 1
    assert "round 3: eval heldout loss" in captured.err  # printed as it happened
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["round"] == 3 and rows[-1]["steps"] == rows[-1]["clients"]  # 1 per client
    assert cli.main(["train", "--resume", str(tmp_path / "run"), "--set", "rounds=4"]) == 0
    assert "round 4 (rounds done" in capsys.readouterr().out

    assert cli.main(["train", str(path), "--no-progress"]) == 2  # a run is there already
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", str(path), "--set", "rounds=1", "--no-progress",
                     "--overwrite"]) == 0
    assert "round 1 (rounds done" in capsys.readouterr().out
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "precious.txt").write_text("x")
    assert cli.main(["train", str(path), "--set", f"output_dir={tmp_path / 'notarun'}",
                     "--overwrite", "--no-progress"]) == 2
    assert (tmp_path / "notarun" / "precious.txt").exists()
    capsys.readouterr()

    assert cli.main(["train", str(path), "--set", "client.optimizer=adamw"]) == 2
    err = capsys.readouterr().err
    assert "'client.optimizer' must be one of 'sgd', 'momentum', 'adam'; got 'adamw'" in err
