"""Splits: groups into named parts (by group), and one group's examples into parts.

Both are pure functions of (seed, sizes): the same dataset and seed always give the same
split, on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedgroups.errors import SettingError
from fedgroups.reader.order import EXAMPLE_SPLIT_STREAM, rng_for, split_counts, split_permutation


def check_fractions(fractions: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """Names and fractions, checked: positive, summing to at most 1."""
    if not fractions:
        raise SettingError("fractions is empty; give e.g. {'train': 0.9, 'test': 0.1}")
    names = list(fractions)
    values = [float(fractions[n]) for n in names]
    for name, v in zip(names, values):
        if not v > 0:
            raise SettingError(f"fraction {name!r} must be positive, got {v}")
    if sum(values) > 1 + 1e-9:
        raise SettingError(f"fractions sum to {sum(values):g} > 1: {dict(fractions)}")
    return names, values


def split_ids(ids: np.ndarray, fractions: Mapping[str, float], seed: int,
              ) -> dict[str, np.ndarray]:
    """Group ids (sorted) per split name: a seeded permutation cut by cumulative fractions.

    Fractions that sum to less than 1 leave the remaining groups out of every split.
    """
    names, values = check_fractions(fractions)
    perm = ids[split_permutation(len(ids), seed)]
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, count in zip(names, split_counts(len(ids), values)):
        out[name] = np.sort(perm[start:start + count])
        start += count
    return out


def split_rows(num_examples: int, fractions: Mapping[str, float], seed: int | None,
               salt: int = 0) -> dict[str, np.ndarray]:
    """Row positions (sorted) of one group per split name.

    ``seed=None`` keeps stored order: the first fraction takes the first rows (a
    "past/future" split); an integer seed assigns rows by a permutation seeded by
    (seed, salt, num_examples) — pass a per-group ``salt`` so groups differ.
    """
    names, values = check_fractions(fractions)
    if seed is None:
        order = np.arange(num_examples, dtype=np.int64)
    else:
        order = rng_for(seed, EXAMPLE_SPLIT_STREAM, salt, num_examples).permutation(num_examples)
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, count in zip(names, split_counts(num_examples, values)):
        out[name] = np.sort(order[start:start + count]).astype(np.int64)
        start += count
    return out
