"""`fedgroups train` as people use it: notes, interrupts, resume safety, loggers, install hints."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fl_testkit import make_records, tiny_config

from fedgroups.fl import cli, simulation
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.federation import Federation
from fedgroups.fl.simulation import run


def _write(cfg: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cohort_larger_than_the_clients_is_said_once_and_recorded(make_dataset, tmp_path: Path
                                                                  ) -> None:
    data = make_dataset(make_records(8))  # 6 training clients after the 0.75 split
    said: list[str] = []
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), rounds=2, cohort_size=50,
                                   **{"eval.datasets": []}))
    res = run(cfg, echo=said.append)
    notes = [m for m in said if "cohort_size 50" in m]
    assert len(notes) == 1 and "every round uses all 6" in notes[0]
    assert [r["cohort"] for r in res.rows] == [6.0, 6.0]
    assert all(r["clients"] + r["skipped"] == 6 for r in res.rows)


def test_ctrl_c_names_the_checkpoint_to_resume_from(make_dataset, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: Any) -> None:
    data = make_dataset(make_records(8))
    path = _write(tiny_config(data, str(tmp_path / "run"), rounds=6,
                              **{"eval.datasets": []}), tmp_path / "c.yaml")
    original = Federation.run_round

    def interrupted(self: Federation, round_: int) -> dict[str, float]:
        if round_ == 3:
            raise KeyboardInterrupt
        return original(self, round_)

    monkeypatch.setattr(Federation, "run_round", interrupted)
    assert cli.main(["train", path, "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "round_000002.pt" in err and f"fedgroups train --resume {tmp_path / 'run'}" in err
    assert "nothing was published" not in err
    shutil.rmtree(tmp_path / "run")
    monkeypatch.setattr(Federation, "run_round",
                        lambda self, r: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["train", path, "--quiet"]) == 130
    assert "No checkpoint was written yet" in capsys.readouterr().err


def test_resume_on_another_dataset_is_refused_unless_allowed(make_dataset, tmp_path: Path,
                                                             capsys: Any) -> None:
    data = make_dataset(make_records(8, seed=0), "data")
    path = _write(tiny_config(data, str(tmp_path / "run"), rounds=2, **{"eval.datasets": [],
                              "run.checkpoint_every": 1}), tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet", "--set", "rounds=1"]) == 0
    state_sha = _checkpoint(tmp_path / "run")["dataset"]["index_sha256"]
    assert state_sha and len(state_sha) == 64
    shutil.rmtree(data)
    make_dataset(make_records(8, seed=1), "data")  # same path, other data
    resume = ["train", "--resume", str(tmp_path / "run"), "--quiet", "--set", "rounds=2"]
    assert cli.main(resume) == 2
    err = capsys.readouterr().err
    assert "was trained on dataset" in err and "--allow-dataset-change" in err
    assert cli.main([*resume, "--allow-dataset-change"]) == 0
    assert [r["round"] for r in _rows(tmp_path / "run")] == [1, 2]


def _checkpoint(run_dir: Path) -> dict[str, Any]:
    import torch

    return torch.load(sorted((run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)


@pytest.mark.slow  # torch.utils.tensorboard imports TensorFlow when it is installed
def test_tensorboard_logger_writes_every_round(make_dataset, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_dataset(make_records(8))
    titles: list[str] = []
    real_plot = simulation.plot_losses

    def spy(rows: Any, path: Path, **kw: Any) -> Path:
        titles.append(kw["title"])
        return real_plot(rows, path, **kw)

    monkeypatch.setattr(simulation, "plot_losses", spy)
    cfg = parse_config(tiny_config(data, str(tmp_path / "tiny-run"), rounds=3,
                                   **{"run.loggers": ["tensorboard"], "eval.every": 2}))
    res = run(cfg, echo=lambda m: None)
    acc = EventAccumulator(str(res.run_dir / "tensorboard"))
    acc.Reload()
    train = acc.Scalars("train_loss")
    assert [e.step for e in train] == [1, 2, 3]  # rounds done, as metrics.csv
    assert [e.value for e in train] == pytest.approx([r["train_loss"] for r in res.rows])
    assert [e.step for e in acc.Scalars("eval/heldout/loss")] == [2, 3]
    assert titles == ["tiny-run: fedavg, 3 rounds"]


def test_missing_tensorboard_is_an_install_hint(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from fedgroups.fl.loggers import make_loggers

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'fedgroups\[loggers\]'"):
        make_loggers(("tensorboard",), tmp_path, {}, resume=False)
    with pytest.raises(ConfigError, match="'run.loggers.0' must be one of 'tensorboard', 'wandb'"):
        parse_config({"data": {"path": "d"}, "output_dir": "o", "rounds": 1, "cohort_size": 1},
                     ["run.loggers=[mlflow]"])


@pytest.mark.slow
def test_wandb_logger_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    from fedgroups.fl.loggers import make_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (logger,) = make_loggers(("wandb",), tmp_path, {"rounds": 2}, resume=False)
    logger.log({"round": 0, "train_loss": 5.0, "note": "text is skipped"})
    logger.log({"round": 1, "train_loss": 4.0, "eval/x/ppl": float("inf")})
    logger.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_missing_torch_is_an_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: Any) -> None:
    monkeypatch.delitem(sys.modules, "fedgroups.fl.simulation")
    monkeypatch.setitem(sys.modules, "torch", None)
    path = _write({"data": {"path": "d"}, "output_dir": str(tmp_path / "o"), "rounds": 1,
                   "cohort_size": 1}, tmp_path / "c.yaml")
    assert cli.main(["train", path]) == 2
    err = capsys.readouterr().err
    assert "no module 'torch'" in err and "pip install 'fedgroups[fl]'" in err


def test_quiet_and_its_old_name() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_train_parser(parser.add_subparsers())
    for flag in ("--quiet", "--no-progress"):
        args = parser.parse_args(["train", "c.yaml", flag])
        assert args.quiet
    assert not parser.parse_args(["train", "c.yaml"]).quiet
