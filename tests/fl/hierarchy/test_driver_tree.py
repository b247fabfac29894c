"""A tree run goes through the same run driver as a flat one (fl/driver.py): loggers, the
dataset check, resume compatibility, optional packages, notes, titles, rounds done."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedgroups.fl import cli
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.hierarchy import records, runner
from fedgroups.fl.hierarchy.config import parse_hierarchy

QUIET: dict[str, Any] = {"personalization.enabled": False, "rounds": 1}


def _write(cfg: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_resume_on_other_data_is_refused_unless_allowed(
        tmp_path: Path, world_config_factory: Any, make_world_records: Any,
        capsys: Any) -> None:
    from fedgroups.engine.api import build

    data = tmp_path / "data"
    build(make_world_records(), "field:doc", str(data), group_columns=("family", "lang"),
          progress=False)
    path = _write(world_config_factory(str(data), tmp_path / "run", **QUIET), tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet"]) == 0
    shutil.rmtree(data)
    build(make_world_records(seed=1), "field:doc", str(data), group_columns=("family", "lang"),
          progress=False)
    resume = ["train", "--resume", str(tmp_path / "run"), "--quiet", "--set", "rounds=2"]
    capsys.readouterr()
    assert cli.main(resume) == 2
    err = capsys.readouterr().err
    assert "was trained on dataset" in err and "--allow-dataset-change" in err
    assert cli.main([*resume, "--allow-dataset-change"]) == 0
    assert [m.round for m in records.read_metrics(tmp_path / "run") if m.kind == "root"] == [1, 2]


def test_resume_refuses_another_method_in_one_line(world_data: str, tmp_path: Path,
                                                    world_config_factory: Any,
                                                    capsys: Any) -> None:
    path = _write(world_config_factory(world_data, tmp_path / "run", **QUIET), tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet"]) == 0
    recorded = (tmp_path / "run" / "config.yaml").read_bytes()
    capsys.readouterr()
    for setting, shown in (("hierarchy.method=fedper", "hierarchy.method: 'worldlm' -> 'fedper'"),
                           ("model.d_model=64", "model.d_model: 32 -> 64")):
        assert cli.main(["train", "--resume", str(tmp_path / "run"), "--set", "rounds=2",
                         "--set", setting]) == 2
        err = capsys.readouterr().err
        assert shown in err and err.count("\n") == 1, err
        assert (tmp_path / "run" / "config.yaml").read_bytes() == recorded


def test_privacy_without_dp_accounting_is_one_line_before_training(
        world_data: str, tmp_path: Path, world_config_factory: Any, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = world_config_factory(world_data, tmp_path / "run", **QUIET, **{
        "hierarchy.node_settings": {"es": {"privacy": {"clip_norm": 1.0,
                                                       "noise_multiplier": 1.0}}}})
    path = _write(cfg, tmp_path / "c.yaml")
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    assert cli.main(["train", path, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'fedgroups[privacy]'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_overwrite_keeps_the_old_tree_run_when_the_new_plan_is_bad(
        world_data: str, tmp_path: Path, world_config_factory: Any, capsys: Any) -> None:
    path = _write(world_config_factory(world_data, tmp_path / "run", **QUIET), tmp_path / "c.yaml")
    assert cli.main(["train", path, "--quiet"]) == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    assert cli.main(["train", path, "--quiet", "--overwrite",
                     "--set", "hierarchy.levels=[family,script]"]) == 2
    assert "script" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before


@pytest.mark.slow  # torch.utils.tensorboard imports TensorFlow when it is installed
def test_a_tree_run_logs_to_tensorboard(world_data: str, tmp_path: Path,
                                        world_config_factory: Any) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = world_config_factory(world_data, tmp_path / "run", **{
        **QUIET, "rounds": 2, "eval.every": 1, "run.loggers": ["tensorboard"]})
    res = runner.run(parse_config(cfg), echo=lambda m: None)
    acc = EventAccumulator(str(res.run_dir / "tensorboard"))
    acc.Reload()
    roots = [r for r in res.rows if r["node"] == "world"]
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
    assert [e.value for e in acc.Scalars("train_loss")] == pytest.approx(
        [r["train_loss"] for r in roots])
    assert [e.step for e in acc.Scalars("eval/mean/loss")] == [1, 2]


def test_notes_title_rounds_done_and_no_bar_in_a_pipe(
        world_data: str, tmp_path: Path, world_config_factory: Any,
        monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("FEDGROUPS_PROGRESS", raising=False)
    titles: list[str] = []
    real_plot = runner.plot_losses

    def spy(rows: Any, path: Path, **kw: Any) -> Path:
        titles.append(kw.get("title"))
        return real_plot(rows, path, **kw)

    monkeypatch.setattr(runner, "plot_losses", spy)
    said: list[str] = []
    cfg = world_config_factory(world_data, tmp_path / "tree-run", cohort_size=50, **{
        **QUIET, "rounds": 2, "eval.every": 1, "run.progress": True})
    res = runner.run(parse_config(cfg), echo=said.append)
    notes = [m for m in said if m.startswith("note: ") and "cohort_size 50" in m]
    assert len(notes) == 4 and all("every round uses all 3" in m for m in notes), said
    assert titles == ["tree-run: worldlm, 2 root rounds"]
    assert "\r" not in capsys.readouterr().err  # captured stderr: not a terminal
    assert sorted({r["round"] for r in res.rows}) == [1, 2]
    assert sorted({e.round for e in res.evals}) == [1, 2]
    assert sorted({a.round for a in records.read_attention(res.run_dir)}) == [1, 2]
    assert [s.split(":")[0] for s in said if ": eval loss" in s] == ["round 1", "round 2"]


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_non_finite_noise_multiplier_is_a_config_error(value: str) -> None:
    section = yaml.safe_load(f"{{levels: [lang], node_settings: {{es: {{privacy: "
                             f"{{clip_norm: 1.0, noise_multiplier: {value}}}}}}}}}")
    with pytest.raises(ConfigError, match=r"hierarchy.node_settings.es.privacy.noise_multiplier must be a finite number"):
        parse_hierarchy(section)


def test_a_python_strategy_reaches_every_leaf_and_is_recorded(
        world_data: str, tmp_path: Path, world_config_factory: Any, capsys: Any) -> None:
    import dataclasses

    from fedgroups.fl.strategy import NormClip, strategy_from_config

    cfg = parse_config(world_config_factory(world_data, tmp_path / "run", **QUIET))
    custom = dataclasses.replace(strategy_from_config(cfg),
                                 processors=(NormClip(max_norm=1e-3),))
    res = runner.run(cfg, strategy=custom, echo=lambda m: None)
    leaves = [n for n in res.root.walk() if n.is_leaf]
    assert leaves and all(any(isinstance(p, NormClip) for p in n.strategy.processors)
                          for n in leaves)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["strategy"]
    assert "NormClip" in recorded["injected"]
    assert cli.main(["train", "--resume", str(tmp_path / "run"), "--set", "rounds=2"]) == 2
    assert "strategy given from Python" in capsys.readouterr().err
