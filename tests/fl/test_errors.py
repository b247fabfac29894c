"""Users' training mistakes are ``FedGroupsError``s (and keep the built-in base they had)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fl_testkit import MemoryDataset, MemoryGroup

from fedgroups.errors import FedGroupsError
from fedgroups.fl import datasets
from fedgroups.fl.algorithms import split_param_names
from fedgroups.fl.backends import DistributedBackend, make_backend
from fedgroups.fl.checkpoint import load_checkpoint
from fedgroups.fl.client_data import iter_texts
from fedgroups.fl.config import DatasetConfig, parse_config
from fedgroups.fl.errors import (
    BackendError,
    CheckpointError,
    ConfigError,
    DataError,
    TokenizerError,
)
from fedgroups.fl.model import ModelArgs, Transformer
from fedgroups.fl.tokenizer import load_tokenizer


def test_config_errors_are_fedgroups_errors_and_value_errors() -> None:
    with pytest.raises(FedGroupsError, match="rounds must be >= 1") as info:
        parse_config({"data": {"path": "d"}, "output_dir": "o", "rounds": 0, "cohort_size": 1})
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)


def test_an_empty_selection_names_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "open_dataset", lambda path: MemoryDataset({"a": [{}]}))
    with pytest.raises(ConfigError, match=r"data: data.keys \['z\*'\] match none of the 1 groups of dataset 'p'"):
        datasets.open_source(DatasetConfig(path="p", keys=("z*",)), "data")


def test_backend_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--backend must be one of"):
        make_backend("mpi")  # type: ignore[arg-type]
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(BackendError, match="torchrun"):
        DistributedBackend()


def test_checkpoint_of_another_format(tmp_path: Path) -> None:
    path = tmp_path / "round_000001.pt"
    torch.save({"format": 99, "round": 1}, path)
    with pytest.raises(CheckpointError, match="checkpoint format 99, expected 1") as info:
        load_checkpoint(path)
    assert isinstance(info.value, FedGroupsError)


def test_model_and_param_name_mistakes() -> None:
    with pytest.raises(ConfigError, match=r"local_params: \['head\.\*'\] match no parameter"):
        split_param_names(["blocks.0.w"], ["head.*"])
    with pytest.raises(ConfigError, match="divisible by model.n_heads"):
        Transformer(ModelArgs(vocab_size=10, seq_len=4, d_model=10, n_layers=1, n_heads=3, d_ff=8))


def test_tokenizer_and_data_mistakes(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing.json")
    group = MemoryGroup("g1", [{"body": "x"}])
    with pytest.raises(DataError, match=r"group 'g1': no column 'text'.*set data.text_column"):
        list(iter_texts(group, "text"))
    with pytest.raises(DataError, match=r"holds int"):
        list(iter_texts(MemoryGroup("g2", [{"text": 3}]), "text"))
