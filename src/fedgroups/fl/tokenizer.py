"""Tokenizers: train a byte-level BPE on a seeded sample of groups, or load one.

``tokenizer.path`` names a ``tokenizer.json`` or a folder (``save_pretrained`` style);
``tokenizer.eos_token`` the token appended to every example (default: the folder's
declared ``eos_token``, else ``<|endoftext|>``).
"""

from __future__ import annotations

import json
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
              min_frequency: int = 2, eos_token: str = EOS) -> Tokenizer:
    """A byte-level BPE (GPT-2 style) with ``eos_token`` as its only special token (id 0)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eos_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _declared_eos(folder: Path) -> str | None:
    """The ``eos_token`` a ``save_pretrained`` folder declares, if any."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = folder / name
        if not f.is_file():
            continue
        try:
            eos = json.loads(f.read_text()).get("eos_token")
        except (OSError, ValueError, AttributeError) as e:
            raise TokenizerError(f"tokenizer.path: cannot read {f}: {e}") from None
        if isinstance(eos, dict):  # {"content": "</s>", ...}
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    return None


def _from_transformers(folder: Path) -> tuple[Tokenizer, str | None]:
    """A folder without tokenizer.json (e.g. vocab.json + merges.txt) via ``AutoTokenizer``."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise TokenizerError(
            f"tokenizer.path: {folder} has no tokenizer.json; install transformers "
            "(pip install 'fedgroups[hf-models]') to load other tokenizer folders, or save "
            "the tokenizer with a fast (tokenizers) backend"
        ) from None
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"tokenizer.path: {folder} is not a tokenizer folder: {e}") from None
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"tokenizer.path: {folder} loads as {type(hf).__name__}, which has no fast "
            "(tokenizers) backend; convert it (save it from a *TokenizerFast) first"
        )
    return backend, hf.eos_token


def open_tokenizer(path: str | Path, eos_token: str | None = None) -> tuple[Tokenizer, str]:
    """(tokenizer, its end-of-text token) from a ``tokenizer.json`` file or a folder.

    A folder is a ``save_pretrained`` / ``AutoTokenizer`` directory: its ``tokenizer.json``
    when there is one (read with ``tokenizers``), else whatever ``transformers``'
    ``AutoTokenizer`` makes of it.  The end-of-text token is ``eos_token`` when given, else
    the folder's declared ``eos_token``, else ``<|endoftext|>``; it must be in the vocabulary.
    """
    path = Path(path)
    declared = None
    if path.is_dir():
        declared = _declared_eos(path)
        if (path / "tokenizer.json").is_file():
            tok = _from_file(path / "tokenizer.json")
        else:
            tok, hf_eos = _from_transformers(path)
            declared = declared or hf_eos
    elif path.is_file():
        tok = _from_file(path)
    else:
        raise TokenizerError(f"tokenizer.path: no tokenizer file or folder at {path}")
    eos = eos_token or declared or EOS
    if tok.token_to_id(eos) is None:
        specials = sorted(t.content for t in tok.get_added_tokens_decoder().values())
        raise TokenizerError(
            f"tokenizer {path} has no end-of-text token {eos!r} (it marks the end of each "
            f"example); its special tokens are {specials[:12]}: set tokenizer.eos_token to "
            "one of them, or add the token to the tokenizer"
        )
    return tok, eos


def _from_file(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for bad JSON
        raise TokenizerError(f"tokenizer.path: cannot read {path} as a tokenizer.json: {e}"
                             ) from None


def load_tokenizer(path: str | Path, eos_token: str | None = None) -> Tokenizer:
    """The tokenizer of :func:`open_tokenizer` (a run directory counts as a folder)."""
    return open_tokenizer(path, eos_token)[0]


def run_eos_id(run_dir: Path, tokenizer: Tokenizer) -> int:
    """Id of the end-of-text token recorded in ``run_dir`` by :func:`prepare_tokenizer`."""
    eos = _declared_eos(run_dir) or EOS
    eos_id = tokenizer.token_to_id(eos)
    if eos_id is None:
        raise TokenizerError(f"{run_dir}: the run's tokenizer has no token {eos!r}")
    return eos_id


def prepare_tokenizer(
    config: TokenizerConfig, source: GroupSource, text_column: str, run_dir: Path, seed: int,
    *, reuse: bool = False,
) -> Tokenizer:
    """The run's tokenizer, saved in ``run_dir`` as a folder.

    ``run_dir/tokenizer.json`` plus ``run_dir/tokenizer_config.json`` naming the
    end-of-text token, so the run directory is itself a tokenizer folder.  With ``reuse``
    (a resume of the run that made it, whose tokenizer settings were checked unchanged) a
    saved one is loaded; otherwise it is trained or loaded from ``config.path`` anew, since
    one left by a failed start may come from other settings.
    """
    saved = run_dir / "tokenizer.json"
    if reuse and saved.is_file():
        return load_tokenizer(run_dir)
    if config.path is not None:
        tok, eos = open_tokenizer(config.path, config.eos_token)
    else:
        eos = config.eos_token or EOS
        texts = sample_texts(
            source, text_column, groups=config.sample_groups,
            examples=config.sample_examples, seed=seed,
        )
        tok = train_bpe(texts, vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                        eos_token=eos)
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = run_dir / "tokenizer_config.json"
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"eos_token": eos}) + "\n")
    tmp.replace(meta)
    tmp = saved.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(saved)  # last: its presence means the folder is complete
    return tok
