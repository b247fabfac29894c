"""The randomness every partitioner shares: seeded, per-example, a pure function of the ordinal."""

from __future__ import annotations

import numpy as np

from fedgroups.errors import SettingError
from fedgroups.keys.hashing import splitmix64, stable_hash

# Distinct salts keep partitioners with the same seed independent of each other.
TAG_DIRICHLET = 0xD1C1
TAG_SHARDS = 0x5A4D
TAG_POWER = 0x9017
TAG_SUPER = 0x5095

Label = str | bytes | int


def salt(seed: int, tag: int) -> np.uint64:
    mixed = splitmix64(np.array([(seed * 0x10001 + tag) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    return mixed[0]


def ordinal_uniforms(ordinals: np.ndarray, seed: int, tag: int) -> np.ndarray:
    """One uniform in [0, 1) per ordinal: a pure function of (ordinal, seed, tag)."""
    bits = splitmix64(ordinals.astype(np.uint64) ^ salt(seed, tag))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def seeded_rng(seed: int, tag: int, label: Label | None = None) -> np.random.Generator:
    """A generator seeded by (seed, tag[, label]) — the same on every worker."""
    words = [seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, tag]
    if label is not None:
        h = stable_hash(label)
        words += [h & 0xFFFFFFFF, h >> 32]
    return np.random.default_rng(np.random.SeedSequence(words))


def check_positive(value: float, what: str) -> None:
    if not value > 0:
        raise SettingError(f"{what} must be positive, got {value!r}")
