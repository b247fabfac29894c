"""The run driver (fl/driver.py) in a flat run: what a run folder may be reused for, what a
resume may change, the checks made before anything is written, and how a run reports."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fl_testkit import make_records, tiny_config

from fedgroups.fl import cli, metrics
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.errors import TokenizerError
from fedgroups.fl.federation import Federation
from fedgroups.fl.simulation import run

QUICK = {"eval.datasets": [], "personalization.enabled": False, "rounds": 2,
         "run.checkpoint_every": 1}


def _write(cfg: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _failed_start(data: str, out: Path, monkeypatch: pytest.MonkeyPatch, **over: Any) -> None:
    """A start that dies after writing tokenizer.json and config.yaml (no round, no metrics)."""
    from fedgroups.fl import simulation

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("died while building the model")

    with monkeypatch.context() as m:
        m.setattr(simulation, "make_model", broken)
        with pytest.raises(RuntimeError, match="died"):
            run(parse_config(tiny_config(data, str(out), **QUICK, **over)), echo=lambda s: None)
    assert (out / "tokenizer.json").is_file() and not (out / "metrics.jsonl").exists()


def test_a_fresh_start_does_not_reuse_a_tokenizer_a_failed_start_left(
        make_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(make_records(8))
    out = tmp_path / "run"
    _failed_start(data, out, monkeypatch, **{"tokenizer.vocab_size": 400})
    res = run(parse_config(tiny_config(data, str(out), **{**QUICK, "rounds": 1})),
              echo=lambda s: None)
    from fedgroups.fl.tokenizer import load_tokenizer

    assert load_tokenizer(res.run_dir).get_vocab_size() <= 300  # the new setting, not 400
    (out / "metrics.jsonl").unlink()
    for p in (out / "checkpoints").iterdir():
        p.unlink()
    with pytest.raises(TokenizerError, match="no tokenizer file or folder"):
        run(parse_config(tiny_config(data, str(out), **QUICK,
                                     **{"tokenizer.path": str(tmp_path / "nonexistent")})),
            echo=lambda s: None)


def test_overwrite_keeps_the_old_run_when_the_new_config_is_bad(
        make_dataset, tmp_path: Path, capsys: Any) -> None:
    data = make_dataset(make_records(8))
    path = _write(tiny_config(data, str(tmp_path / "run"), **QUICK), tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet", "--set", "rounds=1"]) == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    capsys.readouterr()
    for bad in ("strategy.processors=[{name: no_such_processor}]",
                "model.factory=no_such_module_xyz:make"):
        assert cli.main(["train", path, "--quiet", "--overwrite", "--set", bad]) == 2, bad
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("setting, shown", [
    ("seed=5", "seed: 0 -> 5"),
    ("client.lr=0.01", "client.lr: 0.3 -> 0.01"),
    ("tokenizer.vocab_size=400", "tokenizer.vocab_size: 300 -> 400"),
    ("model.d_model=64", "model.d_model: 32 -> 64"),
    ("algorithm.name=fedsgd", "algorithm.name: 'fedavg' -> 'fedsgd'"),
])
def test_resume_refuses_changes_to_what_is_trained(setting: str, shown: str, make_dataset,
                                                   tmp_path: Path, capsys: Any) -> None:
    data = make_dataset(make_records(8))
    path = _write(tiny_config(data, str(tmp_path / "run"), **QUICK), tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet", "--set", "rounds=1"]) == 0
    recorded = (tmp_path / "run" / "config.yaml").read_bytes()
    capsys.readouterr()
    resume = ["train", "--resume", str(tmp_path / "run"), "--quiet", "--set", "rounds=2"]
    assert cli.main([*resume, "--set", setting]) == 2
    err = capsys.readouterr().err
    assert shown in err and "Traceback" not in err and err.count("\n") == 1, err
    assert (tmp_path / "run" / "config.yaml").read_bytes() == recorded
    assert cli.main([*resume, "--set", "eval.every=1", "--set", "run.checkpoint_every=3"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["rounds"] == 2 and saved["run"]["checkpoint_every"] == 3


def test_a_run_with_a_python_strategy_is_recorded_and_not_resumed_as_another(
        make_dataset, tmp_path: Path, capsys: Any) -> None:
    from fedgroups.fl.strategy import NormClip, strategy_from_config

    data = make_dataset(make_records(8))
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), **QUICK))
    custom = dataclasses.replace(strategy_from_config(cfg), processors=(NormClip(max_norm=1.0),))
    run(cfg, strategy=custom, echo=lambda s: None)
    injected = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["strategy"]
    assert "NormClip" in injected["injected"]
    assert cli.main(["train", "--resume", str(tmp_path / "run"), "--set", "rounds=3"]) == 2
    assert "strategy given from Python" in capsys.readouterr().err
    bigger = parse_config(tiny_config(data, str(tmp_path / "run"), **{**QUICK, "rounds": 3}))
    with pytest.raises(ConfigError, match="trained with strategy"):
        run(bigger, resume=True, echo=lambda s: None)
    assert run(bigger, resume=True, strategy=custom, echo=lambda s: None).rows[-1]["round"] == 3


@pytest.mark.slow  # torch.utils.tensorboard imports TensorFlow when it is installed
def test_tensorboard_steps_do_not_repeat_after_a_resume(make_dataset, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_dataset(make_records(8))
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), **{
        **QUICK, "rounds": 4, "run.checkpoint_every": 2, "run.loggers": ["tensorboard"]}))
    original = Federation.run_round

    def crash_in_round_4(self: Federation, r: int) -> dict[str, float]:
        if r == 3:
            raise KeyboardInterrupt
        return original(self, r)

    with monkeypatch.context() as m:
        m.setattr(Federation, "run_round", crash_in_round_4)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, echo=lambda s: None)
    res = run(cfg, resume=True, echo=lambda s: None)  # from round 2: rewrites round 3
    acc = EventAccumulator(str(res.run_dir / "tensorboard"))
    acc.Reload()
    train = acc.Scalars("train_loss")
    assert [e.step for e in train] == [1, 2, 3, 4]
    assert [e.value for e in train] == pytest.approx([r["train_loss"] for r in res.rows])


def test_a_cut_off_last_line_is_dropped_on_resume(make_dataset, tmp_path: Path) -> None:
    data = make_dataset(make_records(8))
    cfg = tiny_config(data, str(tmp_path / "run"), **QUICK)
    run(parse_config(cfg), echo=lambda s: None)
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"round": 3, "train_lo')
    said: list[str] = []
    res = run(parse_config({**cfg, "rounds": 3}), resume=True, echo=said.append)
    assert "metrics.jsonl: dropped an incomplete last line (22 bytes)" in said
    assert [r["round"] for r in res.rows] == [1, 2, 3] == [r["round"] for r in _rows(metrics)]


def test_repair_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"round": 1}\n{"round": 2}')  # whole, only the newline missing: kept
    assert metrics.repair_jsonl(f) == 0 and f.read_text() == '{"round": 1}\n{"round": 2}\n'
    f.write_text('{"round": 1}\n{"rou')
    assert metrics.repair_jsonl(f) == 5 and f.read_text() == '{"round": 1}\n'
    f.write_text('{"rou')
    assert metrics.repair_jsonl(f) == 5 and f.read_text() == ""


def test_missing_run_folder_and_non_dataset_say_what_they_are(tmp_path: Path,
                                                              capsys: Any) -> None:
    assert cli.main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "the folder does not exist" in capsys.readouterr().err
    (tmp_path / "notdata").mkdir()
    path = _write({"data": {"path": str(tmp_path / "notdata")}, "output_dir":
                   str(tmp_path / "o"), "rounds": 1, "cohort_size": 1}, tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not a fedgroups dataset (it has no manifest.json)" in err
    assert "fedgroups build SOURCE" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("module, setting, extra", [
    ("tensorboard", "run.loggers=[tensorboard]", "pip install 'fedgroups[loggers]'"),
    ("wandb", "run.loggers=[wandb]", "pip install wandb"),
    ("transformers", "model={seq_len: 16, factory: 'transformers:AutoModel'}",
     "pip install 'fedgroups[hf-models]'"),
])
def test_missing_optional_packages_are_said_before_training(
        module: str, setting: str, extra: str, make_dataset, tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(make_records(8))
    path = _write(tiny_config(data, str(tmp_path / "run"), **QUICK), tmp_path / "c.yaml")
    monkeypatch.setitem(sys.modules, module, None)
    assert cli.main(["train", path, "--quiet", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert extra in err and err.count("\n") == 1 and not (tmp_path / "run").exists(), err


_PROBE = """
import sys
from fedgroups.cli import main
rc = main(sys.argv[1:])
print("RESULT", rc, "torch" in sys.modules)
"""


@pytest.mark.parametrize("args", [
    ["--set", "client.optimizer=adamw"],
    ["--set", "hierarchy={levels: [lang], tau: 0}"],
    ["--set", "hierarchy={levels: [lang], node_settings: {es: {privacy: "
              "{clip_norm: 1, noise_multiplier: .inf}}}}"],
])
def test_a_config_error_exits_2_without_importing_torch(args: list[str], tmp_path: Path) -> None:
    path = _write({"data": {"path": str(tmp_path / "d")}, "output_dir": str(tmp_path / "o"),
                   "rounds": 1, "cohort_size": 1}, tmp_path / "c.yaml")
    out = subprocess.run([sys.executable, "-c", _PROBE, "train", path, *args],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "RESULT 2 False", out.stdout + out.stderr
    assert "config error" in out.stderr


def test_train_draws_no_progress_bar_into_a_pipe(make_dataset, tmp_path: Path, capsys: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDGROUPS_PROGRESS", raising=False)
    data = make_dataset(make_records(8))
    path = _write(tiny_config(data, str(tmp_path / "run"), **QUICK,
                              **{"run.progress": True}), tmp_path / "c.yaml")
    assert cli.main(["train", path]) == 0  # stderr is captured: not a terminal
    assert "\r" not in capsys.readouterr().err


def test_rows_and_personalization_count_rounds_done(make_dataset, tmp_path: Path) -> None:
    data = make_dataset(make_records(8))
    said: list[str] = []
    res = run(parse_config(tiny_config(data, str(tmp_path / "run"), rounds=2,
                                       **{"eval.every": 1, "personalization.every": 1})),
              echo=said.append)
    assert [r["round"] for r in res.rows] == [1, 2]
    pers = _rows(res.run_dir / "personalization.jsonl")
    assert sorted({p["round"] for p in pers}) == [1, 2]
    assert [s.split(":")[0] for s in said if ": eval heldout" in s] == ["round 1", "round 2"]
