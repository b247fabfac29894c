"""The run's model: the built-in transformer (a preset) or any causal LM a factory returns.

A factory is ``fn(*, vocab_size, seq_len, **model.kwargs) -> torch.nn.Module``, named in
the config as ``model.factory: "package.module:function"`` or passed to ``run(...,
model_factory=fn)``.  The module maps token ids (B, T) to logits (B, T, V) with
V >= vocab_size, or to an object with ``.logits`` (Hugging Face ``transformers``) or a
tuple starting with them.  Its parameter names are what ``algorithm.local_params`` and a
hierarchy's key-layer globs match (e.g. ``transformer.h.1.*`` for GPT-2).

The factory runs with the global torch RNG seeded from the run's seed (restored after), so
the same seed gives the same initial weights whatever the factory draws from.  For example,
a tiny GPT-2 built from a config (no download)::

    def tiny_gpt2(*, vocab_size, seq_len, n_embd=64, n_layer=2):
        from transformers import GPT2Config, GPT2LMHeadModel
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=seq_len,
                                          n_embd=n_embd, n_layer=n_layer, n_head=4))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fedgroups.fl.config import ConfigError, ModelConfig, to_dict
from fedgroups.fl.model import PRESETS, ModelArgs, build_model, lm_logits
from fedgroups.fl.plugins import load_callable

ModelFactory = Callable[..., nn.Module]


def model_args(config: ModelConfig, vocab_size: int) -> ModelArgs:
    """The built-in transformer's shape: the preset plus the config's overrides."""
    d, layers, heads = PRESETS[config.preset]
    d = config.d_model or d
    return ModelArgs(
        vocab_size=vocab_size, seq_len=config.seq_len, d_model=d,
        n_layers=config.n_layers or layers, n_heads=config.n_heads or heads,
        d_ff=config.d_ff or 4 * d,
    )


def make_model(config: ModelConfig, vocab_size: int, seed: int,
               factory: ModelFactory | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model, its description for checkpoints and logs); the same seed gives the same model."""
    if factory is None and config.factory is None:
        args = model_args(config, vocab_size)
        return build_model(args, seed), to_dict(args)
    if factory is None:
        name = str(config.factory)
        factory = load_callable(config.factory, "model.factory")
    else:
        name = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', factory)}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(vocab_size=vocab_size, seq_len=config.seq_len, **config.kwargs)
        except TypeError as e:
            raise ConfigError(
                f"model.factory {name}: {e}; it is called as fn(vocab_size=..., seq_len=..., "
                "**model.kwargs)"
            ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory {name} returned {type(model).__name__}, not a "
                          "torch.nn.Module")
    hf_config = getattr(model, "config", None)
    if getattr(hf_config, "use_cache", None):
        hf_config.use_cache = False  # no key/value cache in training (memory, speed)
    _check_logits(model, name, vocab_size, config.seq_len)
    return model, {"factory": name, "kwargs": dict(config.kwargs), "vocab_size": vocab_size,
                   "seq_len": config.seq_len}


def _check_logits(model: nn.Module, name: str, vocab_size: int, seq_len: int) -> None:
    """One forward pass on (1, seq_len) ids: the logits must be (1, seq_len, >= vocab_size)."""
    was_training = model.training
    model.eval()
    ids = torch.zeros(1, seq_len, dtype=torch.long)
    try:
        with torch.no_grad():
            logits = lm_logits(model, ids)
    except ConfigError as e:
        raise ConfigError(f"model.factory {name}: {e}") from None
    except (IndexError, RuntimeError) as e:
        raise ConfigError(
            f"model.factory {name}: the model fails on token ids of shape (1, {seq_len}) "
            f"({type(e).__name__}: {e}); check its vocab size and context length against "
            "model.seq_len"
        ) from None
    finally:
        model.train(was_training)
    if logits.dim() != 3 or tuple(logits.shape[:2]) != (1, seq_len) or \
            logits.shape[2] < vocab_size:
        raise ConfigError(
            f"model.factory {name}: for ids of shape (1, {seq_len}) the model returned logits "
            f"of shape {tuple(logits.shape)}; expected (1, {seq_len}, V) with V >= the "
            f"tokenizer's vocab size {vocab_size}"
        )
