"""Per-client pipeline: a group's examples -> tokens (+EOS) -> packed sequences -> batches.

Reading is streamed and stops as soon as ``max_sequences`` sequences are full, so a client
larger than RAM costs O(max_sequences * seq_len) memory, never O(group).  One huge example
is not tokenized whole either: only a prefix long enough to fill the client (see
:func:`encode_prefix`), so memory and time stay O(max_sequences * seq_len) per client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from fedgroups.fl.errors import DataError
from fedgroups.format.rows import column_values

_READ_BATCH = 256  # rows per Arrow batch read from a group
_ENCODE_BATCH = 32  # texts tokenized at once; small so we stop reading soon after the cap
# Pre-tokens (words) ending this close to a prefix's cut may differ from those of the whole
# text (regex lookahead, contractions such as "'re"); they are re-tokenized with more text.
_CUT_MARGIN = 64


@dataclass(frozen=True)
class ClientData:
    key: Any
    sequences: torch.Tensor  # (N, seq_len + 1) int64; row i predicts row[1:] from row[:-1]
    num_examples: int  # examples read to fill the sequences

    @property
    def num_sequences(self) -> int:
        return int(self.sequences.shape[0])

    @property
    def num_tokens(self) -> int:
        """Target tokens (positions with a loss)."""
        return int(self.sequences.shape[0] * (self.sequences.shape[1] - 1))


def iter_texts(group: Any, column: str) -> Iterator[str]:
    """The ``column`` of each example of ``group``, streamed; null values are skipped."""
    if hasattr(group, "batches"):
        values = (
            v
            for batch in group.batches(batch_size=_READ_BATCH, columns=[column])
            for v in column_values(batch.column(column))
        )
    else:
        values = (_field(ex, column, group) for ex in group)
    for v in values:
        if v is None:
            continue
        if not isinstance(v, str):
            raise DataError(
                f"group {group.key!r}: column {column!r} holds {type(v).__name__}, "
                "expected text; set data.text_column to a string column"
            )
        yield v


def _field(example: dict[str, Any], column: str, group: Any) -> Any:
    try:
        return example[column]
    except KeyError:
        raise DataError(
            f"group {group.key!r}: no column {column!r} (columns: {sorted(example)}); "
            "set data.text_column"
        ) from None


def pack_client(
    group: Any,
    tokenizer: Tokenizer,
    *,
    text_column: str,
    seq_len: int,
    max_sequences: int,
    eos_id: int,
) -> ClientData:
    """Tokenize, append EOS, concatenate and cut into at most ``max_sequences`` rows of
    ``seq_len + 1`` tokens.  The tail that does not fill a row is dropped."""
    width = seq_len + 1
    need = max_sequences * width
    parts: list[np.ndarray] = []
    total = 0
    examples = 0
    pending: list[str] = []

    # A text this long surely holds more tokens than a client needs when the tokenizer
    # splits it into words (every token is at most a few dozen characters).
    long_text = max(4096, 16 * need)

    def flush() -> None:
        nonlocal total, examples
        short = [t if len(t) <= long_text else "" for t in pending]
        for text, enc in zip(pending, tokenizer.encode_batch(short, add_special_tokens=False)):
            if total >= need:
                break
            if len(text) > long_text:
                prefix = encode_prefix(tokenizer, text, need - total)
                if prefix is not None:  # the client is full after these tokens: no EOS
                    parts.append(np.asarray(prefix, dtype=np.int64))
                    total += len(prefix)
                    examples += 1
                    break
                enc = tokenizer.encode(text, add_special_tokens=False)
            ids = np.asarray(enc.ids + [eos_id], dtype=np.int64)
            parts.append(ids)
            total += ids.size
            examples += 1
        pending.clear()

    for text in iter_texts(group, text_column):
        pending.append(text)
        if len(pending) >= _ENCODE_BATCH:
            flush()
            if total >= need:
                break
    if pending and total < need:
        flush()
    rows = min(total // width, max_sequences)
    flat = np.concatenate(parts)[: rows * width] if parts else np.zeros(0, dtype=np.int64)
    return ClientData(
        key=group.key,
        sequences=torch.from_numpy(flat.reshape(rows, width)),
        num_examples=examples,
    )


def encode_prefix(tokenizer: Tokenizer, text: str, at_least: int) -> list[int] | None:
    """The first ``n >= at_least`` token ids of ``tokenizer.encode(text)``, computed from a
    prefix of ``text`` (doubled until long enough); None if that takes the whole text or the
    tokenizer has no word splitting (then the caller encodes all of it).

    Tokens of words that end within ``_CUT_MARGIN`` characters of the cut are dropped: a
    word-splitting tokenizer encodes every earlier word as it would in the whole text.
    """
    cut = max(4 * at_least, 1024)
    while cut < len(text):
        enc = tokenizer.encode(text[:cut], add_special_tokens=False)
        words = enc.word_ids
        if not words or words[-1] is None:
            return None
        limit = cut - _CUT_MARGIN
        keep = len(words)
        while keep > 0 and enc.offsets[keep - 1][1] > limit:  # tokens near the cut
            keep -= 1
        while 0 < keep < len(words) and words[keep - 1] == words[keep]:  # ... and their words
            keep -= 1
        if keep >= at_least:
            return enc.ids[:keep]
        cut *= 2
    return None


def iter_batches(
    sequences: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """One epoch of batches; shuffled by ``generator`` when given, else in order."""
    n = sequences.shape[0]
    if generator is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield sequences[order[start : start + batch_size]]
