"""docs/training.md, "Adding an algorithm": the example on that page, run as a user would."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fl_testkit import make_records, memory_federation, tiny_config

from fedgroups.fl import cli
from fedgroups.fl.config import parse_config
from fedgroups.fl.federation import Federation

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _example_source() -> str:
    section = DOC.read_text().split("## Adding an algorithm", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds one complete Python example"
    return blocks[0]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_algorithms.py").write_text(_example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_algorithms", None)
    return "my_algorithms"


def _federation(algorithm: dict[str, Any]) -> Federation:
    cfg = parse_config({
        "data": {"path": "x"}, "output_dir": "x", "rounds": 3, "cohort_size": 4, "seed": 5,
        "model": {"seq_len": 16}, "algorithm": algorithm,
        "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 3, "batch_size": 4,
                   "max_sequences": 12},
        "server": {"optimizer": "sgd", "lr": 1.0}})
    return memory_federation(cfg)


def _trained(fed: Federation, rounds: int = 3) -> torch.Tensor:
    for r in range(rounds):
        fed.run_round(r)
    fed.load_global(fed.model)
    return torch.cat([p.detach().reshape(-1) for _, p in sorted(fed.model.named_parameters())])


def test_the_example_with_mu_zero_is_fedavg_bit_for_bit(user_module: str) -> None:
    fedavg = _trained(_federation({"name": "fedavg"}))
    mine = _federation({"factory": f"{user_module}:make", "mu": 0.0})
    assert type(mine.strategy.algorithm).__name__ == "Proximal"
    assert torch.equal(_trained(mine), fedavg)
    pulled = _trained(_federation({"factory": f"{user_module}:make", "mu": 1.0}))
    assert not torch.equal(pulled, fedavg)
    # the pull keeps the global model nearer its start than FedAvg moves it
    start = torch.cat([p.detach().reshape(-1) for _, p in
                       sorted(_federation({"name": "fedavg"}).model.named_parameters())])
    assert (pulled - start).norm() < (fedavg - start).norm()


def test_the_example_trains_from_a_config_and_is_recorded(user_module: str, make_dataset,
                                                          tmp_path: Path) -> None:
    data = make_dataset(make_records(8))
    cfg = tiny_config(data, str(tmp_path / "run"), rounds=2)
    cfg["algorithm"] = {"factory": f"{user_module}:make", "mu": 0.1}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", str(path), "--quiet"]) == 0
    record = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["algorithm"]
    assert record["name"] == "proximal" and record["factory"] == f"{user_module}:make"
    assert record["params"] == {"mu": 0.1}
    # an unknown setting names the valid ones, before any run folder is made
    cfg["algorithm"] = {"factory": f"{user_module}:make", "nu": 0.1}
    cfg["output_dir"] = str(tmp_path / "bad")
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", str(path), "--quiet"]) == 2
    assert not (tmp_path / "bad").exists()
