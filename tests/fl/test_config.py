from __future__ import annotations

import pytest

from fedgroups.fl.config import ConfigError, TrainConfig, from_dict, parse_config, to_dict

BASE = {"data": {"path": "d"}, "output_dir": "o", "rounds": 2, "cohort_size": 2}


def test_defaults_and_roundtrip() -> None:
    cfg = parse_config(BASE)
    assert cfg.algorithm.name == "fedavg" and cfg.server.optimizer == "sgd"
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_setting_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'server.lrr'; allowed: .*lr"):
        parse_config(BASE, ["server.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"unknown setting 'roundz'"):
        parse_config({**BASE, "roundz": 3})


def test_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"'client.optimizer' must be one of 'sgd', 'momentum', 'adam'"):
        parse_config(BASE, ["client.optimizer=adm"])
    with pytest.raises(ConfigError, match=r"'server.schedule.name' must be one of"):
        parse_config(BASE, ["server.schedule.name=linear"])


@pytest.mark.parametrize("override, match", [
    ("rounds=2.5", "'rounds' must be int"),
    ("rounds=true", "'rounds' must be int"),
    ("run.progress=3", "'run.progress' must be bool"),
    ("client.lr=fast", "'client.lr' must be float"),
    ("client.betas=[0.9]", "'client.betas' must be"),
    ("rounds=0", "rounds must be >= 1"),
])
def test_ill_typed_or_out_of_range(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(BASE, [override])


def test_overrides_typed_by_yaml() -> None:
    cfg = parse_config(BASE, ["rounds=200", "server.lr=1e-3", "client.local_steps=5",
                              "algorithm.local_params=[blocks.1.*]", "client.betas=[0.8,0.9]"])
    assert cfg.rounds == 200 and cfg.server.lr == pytest.approx(1e-3)
    assert cfg.client.local_steps == 5 and cfg.algorithm.local_params == ("blocks.1.*",)
    assert cfg.client.betas == (0.8, 0.9)


def test_conflicts_are_rejected() -> None:
    with pytest.raises(ConfigError, match="local_steps or client.local_epochs"):
        parse_config(BASE, ["client.local_steps=2", "client.local_epochs=1"])
    with pytest.raises(ConfigError, match="use_split must be one of"):
        parse_config(BASE, ["data.split={train: 0.5, test: 0.5}"])
    with pytest.raises(ConfigError, match="missing required setting 'rounds'"):
        parse_config({k: v for k, v in BASE.items() if k != "rounds"})


def test_eval_list_index_override() -> None:
    data = {**BASE, "eval": {"datasets": [{"name": "a", "path": "p"}]}}
    cfg = parse_config(data, ["eval.datasets.0.max_clients=3"])
    assert cfg.eval.datasets[0].max_clients == 3
    with pytest.raises(ConfigError, match=r"'eval.datasets.0.max_clients' must be int"):
        parse_config(data, ["eval.datasets.0.max_clients=x"])
