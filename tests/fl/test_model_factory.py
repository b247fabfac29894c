"""Bring your own model: a factory named in the config or passed in, HF transformers included."""

from __future__ import annotations

import importlib
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fl_testkit import make_records, tiny_config

from fedgroups.fl import cli
from fedgroups.fl.config import ConfigError, ModelConfig, parse_config
from fedgroups.fl.model_factory import make_model
from fedgroups.fl.simulation import run

FACTORIES = '''
import torch
from torch import nn


class Bigram(nn.Module):
    """Logits from the previous token only: the smallest causal LM."""

    def __init__(self, vocab_size, width):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, idx):
        return (self.head(self.emb(idx)),)  # a tuple, as some libraries return


def bigram(*, vocab_size, seq_len, width=16):
    return Bigram(vocab_size, width)


def too_small_vocab(*, vocab_size, seq_len):
    return Bigram(vocab_size - 1, 4)


def not_a_module(*, vocab_size, seq_len):
    return "gpt"


def tiny_gpt2(*, vocab_size, seq_len, dropout=0.0):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab_size, n_positions=seq_len, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        bos_token_id=0, eos_token_id=0))


def tiny_llama(*, vocab_size, seq_len):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=seq_len,
        bos_token_id=0, eos_token_id=0, pad_token_id=0))
'''


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"user_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def _losses(rows: list[dict]) -> list[float]:
    return [r["train_loss"] for r in rows]


def test_a_config_factory_trains_and_is_seeded(factories: Any, make_dataset: Any,
                                               tmp_path: Path) -> None:
    data = make_dataset(make_records(12))
    spec = f"{factories.__name__}:bigram"
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), rounds=3,
                                   **{"model": {"seq_len": 16, "factory": spec,
                                                "kwargs": {"width": 8}},
                                      "client.lr": 1.0}))
    res = run(cfg, echo=lambda m: None)
    losses = _losses(res.rows)
    assert losses[-1] < losses[0]
    assert type(res.model).__name__ == "Bigram" and res.model.emb.weight.shape[1] == 8
    state = torch.load(tmp_path / "run/checkpoints/round_000003.pt", weights_only=True)
    assert state["model_args"]["factory"] == spec and state["model_args"]["kwargs"] == {"width": 8}
    a, _ = make_model(cfg.model, 300, seed=1)
    b, _ = make_model(cfg.model, 300, seed=1)
    c, _ = make_model(cfg.model, 300, seed=2)
    assert torch.equal(a.emb.weight, b.emb.weight) and not torch.equal(a.emb.weight, c.emb.weight)


def test_bad_factories_say_what_is_wrong(factories: Any) -> None:
    mod = factories.__name__
    with pytest.raises(ConfigError, match=r"returned str, not a torch.nn.Module"):
        make_model(ModelConfig(factory=f"{mod}:not_a_module"), 50, 0)
    with pytest.raises(ConfigError, match=r"logits of shape \(1, 8, 49\); expected \(1, 8, V\) "
                                          r"with V >= the tokenizer's vocab size 50"):
        make_model(ModelConfig(factory=f"{mod}:too_small_vocab", seq_len=8), 50, 0)
    with pytest.raises(ConfigError, match=r"unexpected keyword argument 'depth'.*model.kwargs"):
        make_model(ModelConfig(factory=f"{mod}:bigram", kwargs={"depth": 2}), 50, 0)
    with pytest.raises(ConfigError, match=r"model.d_model: only for the built-in transformer"):
        ModelConfig(factory=f"{mod}:bigram", d_model=32)
    with pytest.raises(ConfigError, match=r"model.kwargs: only with model.factory"):
        ModelConfig(kwargs={"width": 3})


@pytest.mark.slow
def test_hf_gpt2_from_a_config_trains_through_the_cli(factories: Any, make_dataset: Any,
                                                      tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("transformers")
    data = make_dataset(make_records(12))
    cfg = tiny_config(data, str(tmp_path / "gpt2"), rounds=3,
                      **{"model": {"seq_len": 16, "factory": f"{factories.__name__}:tiny_gpt2",
                                   "kwargs": {"dropout": 0.1}},
                         # the last block stays with each client, by GPT-2's parameter names
                         "algorithm.local_params": ["transformer.h.1.*"],
                         "client.optimizer": "adam", "client.lr": 3e-3, "eval.every": 1})
    path = tmp_path / "gpt2.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", str(path), "--quiet"]) == 0
    rows = [yaml.safe_load(x) for x in (tmp_path / "gpt2/metrics.jsonl").read_text().splitlines()]
    losses = _losses(rows)
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.3
    evals = [r["eval/heldout/loss"] for r in rows]
    assert evals[-1] < evals[0]
    assert "eval heldout" in capsys.readouterr().out


@pytest.mark.slow
def test_hf_llama_and_gpt2_with_dropout_through_the_python_api(
        factories: Any, make_dataset: Any, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    data = make_dataset(make_records(12))

    def train(name: str, factory: Any, rounds: int) -> list[float]:
        torch.manual_seed(len(name))  # the global RNG's state must not matter
        cfg = parse_config(tiny_config(data, str(tmp_path / name), rounds=rounds,
                                       **{"model": {"seq_len": 16}, "eval.datasets": [],
                                          "client.optimizer": "adam", "client.lr": 3e-3}))
        return _losses(run(cfg, echo=lambda m: None, model_factory=factory).rows)

    losses = train("llama", factories.tiny_llama, 3)
    assert losses[-1] < losses[0] - 0.3
    # Dropout draws from the global RNG, seeded per client and round: runs repeat exactly.
    gpt2 = partial(factories.tiny_gpt2, dropout=0.2)
    assert train("a", gpt2, 2) == train("bb", gpt2, 2)
