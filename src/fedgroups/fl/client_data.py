"""Per-client pipeline: a group's examples -> tokens (+EOS) -> packed sequences -> batches.

Reading is streamed and stops as soon as ``max_sequences`` sequences are full, so a client
larger than RAM costs O(max_sequences * seq_len) memory, never O(group).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

_READ_BATCH = 256  # rows per Arrow batch read from a group
_ENCODE_BATCH = 32  # texts tokenized at once; small so we stop reading soon after the cap


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
            for v in batch.column(column).to_pylist()
        )
    else:
        values = (_field(ex, column, group) for ex in group)
    for v in values:
        if v is None:
            continue
        if not isinstance(v, str):
            raise TypeError(
                f"group {group.key!r}: column {column!r} holds {type(v).__name__}, "
                "expected text; set data.text_column to a string column"
            )
        yield v


def _field(example: dict[str, Any], column: str, group: Any) -> Any:
    try:
        return example[column]
    except KeyError:
        raise KeyError(
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

    def flush() -> None:
        nonlocal total, examples
        for enc in tokenizer.encode_batch(pending, add_special_tokens=False):
            if total >= need:
                break
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
