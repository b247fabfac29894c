"""Tokenizers: train a byte-level BPE on a seeded sample of groups, or load a tokenizer.json."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from fedgroups.fl.client_data import iter_texts
from fedgroups.fl.config import TokenizerConfig
from fedgroups.fl.datasets import GroupSource
from fedgroups.fl.errors import TokenizerError

EOS = "<|endoftext|>"


def sample_texts(
    source: GroupSource, text_column: str, *, groups: int, examples: int, seed: int
) -> Iterator[str]:
    """Texts from ``groups`` groups drawn without replacement by ``seed``, ``examples`` at most.

    Every sampled group contributes an equal share so one huge group cannot dominate.
    """
    keys = source.keys
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x70C]))
    chosen = rng.choice(len(keys), size=min(groups, len(keys)), replace=False)
    per_group = max(1, examples // max(1, len(chosen)))
    for i in sorted(chosen.tolist()):
        for n, text in enumerate(iter_texts(source.group(keys[i]), text_column)):
            if n >= per_group:
                break
            yield text


def train_bpe(texts: Sequence[str] | Iterator[str], *, vocab_size: int,
              min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE (GPT-2 style) with ``EOS`` as its only special token (id 0)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer.path: no tokenizer file at {path}")
    tok = Tokenizer.from_file(str(path))
    if tok.token_to_id(EOS) is None:
        raise TokenizerError(
            f"tokenizer {path} has no {EOS!r} token; add it as a special token "
            "(it marks the end of each example)"
        )
    return tok


def prepare_tokenizer(
    config: TokenizerConfig, source: GroupSource, text_column: str, run_dir: Path, seed: int
) -> Tokenizer:
    """The run's tokenizer, saved as ``run_dir/tokenizer.json`` (reused when it exists)."""
    saved = run_dir / "tokenizer.json"
    if saved.is_file():
        return load_tokenizer(saved)
    if config.path is not None:
        tok = load_tokenizer(config.path)
    else:
        texts = sample_texts(
            source, text_column, groups=config.sample_groups,
            examples=config.sample_examples, seed=seed,
        )
        tok = train_bpe(texts, vocab_size=config.vocab_size, min_frequency=config.min_frequency)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(saved)
    return tok
