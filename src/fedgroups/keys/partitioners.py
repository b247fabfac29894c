"""Synthetic partitioners: the hand-made heterogeneity of federated-learning papers as keys.

Each partitioner is a :class:`KeyFunction`, so ``fg.build(source, DirichletLabelKey(...), out)``
works on any engine. Each is computed one batch at a time from the seed, the example's
ordinal (its stable position in the source) and, where it needs one, its label — never a
pass over the whole dataset. So the same seed gives the same groups on every machine, with
any number of workers.

The one source of per-example randomness is :func:`ordinal_uniforms`: ``splitmix64`` of the
ordinal xor a salt derived from (seed, partitioner), mapped to [0, 1). Each partitioner
inverts a CDF at that uniform.

=====================  ==========================================  =======================
partitioner            promise                                     KEYSPEC
=====================  ==========================================  =======================
``IidKey``             each example uniform over N groups          ``iid:N[:SEED]``
``DirichletLabelKey``  label l's examples spread over groups with  ``dirichlet:N:ALPHA:
                       proportions p_l ~ Dirichlet(alpha·1_N)      LABEL[:SEED]``
``LabelShardsKey``     every group holds at most k labels          ``pathological:N:K:
                       ("pathological" non-IID)                    LABEL:L[:SEED]``
``PowerLawKey``        group j (0-based) gets a share ∝ (j+1)^-s   ``power-law:N:S[:SEED]``
``SuperGroupKey``      each value of a column (a group key) goes   ``super:M:FIELD[:SEED]``
                       to one of M super-groups, all its examples
                       together
=====================  ==========================================  =======================
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.errors import SettingError
from fedgroups.keys.functions import IidKey, KeyFunction, KeyRowError, _column, normalise_key_array
from fedgroups.keys.partition_random import (
    TAG_DIRICHLET,
    TAG_POWER,
    TAG_SHARDS,
    Label,
    check_positive,
    ordinal_uniforms,
    seeded_rng,
)
from fedgroups.keys.partition_super import SuperGroupKey, super_group_mapping


def _labels(batch: pa.RecordBatch, name: str) -> pa.Array:
    return normalise_key_array(_column(batch, name), f"label column {name!r}")


def _per_label(labels: pa.Array) -> tuple[list[Label | None], np.ndarray]:
    """Distinct label values and, per row, the position of its value (nulls → -1)."""
    encoded = pc.dictionary_encode(labels)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return encoded.dictionary.to_pylist(), codes


def _inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Smallest j with u < cdf[j] (cdf ends at ~1; rounding can't push past the last group)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _with_nulls(groups: np.ndarray, codes: np.ndarray) -> pa.Array:
    """Groups as int64 keys; rows whose label is null get no group (the engine's policy)."""
    return pa.array(groups, pa.int64(), mask=codes < 0)


@dataclass(frozen=True, kw_only=True)
class DirichletLabelKey(KeyFunction):
    """Label skew: label l's examples go to group j with probability ``proportions(l)[j]``.

    ``proportions(l)`` ~ Dirichlet(alpha · 1_N), drawn from a generator seeded by
    (seed, l), so no worker needs to see the other labels. Small alpha (0.1) gives each
    label to a few groups; large alpha (100) is close to IID. Group sizes vary too, as in
    the usual recipe (Hsu et al., 2019).

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = DirichletLabelKey(spec="dirichlet:4:0.5:y", num_groups=4, alpha=0.5,
    ...                         label_column="y")
    >>> key.keys(pa.record_batch({"y": [0, 1, 0]}), np.arange(3, dtype=np.uint64)).type
    DataType(int64)
    """

    num_groups: int
    alpha: float
    label_column: str
    seed: int = 0
    _cache: dict[Hashable, np.ndarray] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_positive(self.num_groups, "num_groups")
        check_positive(self.alpha, "alpha")
        if self.columns is None:
            object.__setattr__(self, "columns", (self.label_column,))

    def proportions(self, label: Label) -> np.ndarray:
        """The promised distribution of ``label``'s examples over the N groups."""
        cached = self._cache.get(label)
        if cached is not None:
            return cached
        rng = seeded_rng(self.seed, TAG_DIRICHLET, label)
        p = rng.dirichlet(np.full(self.num_groups, self.alpha))
        if not np.all(np.isfinite(p)) or p.sum() <= 0:
            # alpha so small that every gamma draw underflowed: the alpha → 0 limit, one group.
            p = np.zeros(self.num_groups)
            p[rng.integers(self.num_groups)] = 1.0
        self._cache[label] = p
        return p

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        values, codes = _per_label(_labels(batch, self.label_column))
        u = ordinal_uniforms(ordinals, self.seed, TAG_DIRICHLET)
        groups = np.zeros(len(codes), np.int64)
        for code, value in enumerate(values):
            rows = np.flatnonzero(codes == code)
            groups[rows] = _inverse_cdf(np.cumsum(self.proportions(value)), u[rows])
        return _with_nulls(groups, codes)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "partitioner": "dirichlet-label", "num_groups": self.num_groups,
                "alpha": self.alpha, "label_column": self.label_column, "seed": self.seed}


@dataclass(frozen=True, kw_only=True)
class LabelShardsKey(KeyFunction):
    """"Pathological" non-IID: every group holds examples of at most ``labels_per_group`` labels.

    The label vocabulary is given (``labels``), since no worker sees all the data. A deck
    of seeded shuffles of the vocabulary is dealt k cards per group, so each label is dealt
    ⌊N·k/L⌋ or ⌈N·k/L⌉ times, and its examples are spread uniformly over the groups that
    hold it. A group holds exactly k labels unless a deal crosses two shuffles and repeats
    one (then fewer). Needs N·k ≥ L, so that every label has a group.
    """

    num_groups: int
    labels_per_group: int
    label_column: str
    labels: tuple[Label, ...]
    seed: int = 0
    _holders: dict[Hashable, np.ndarray] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_positive(self.num_groups, "num_groups")
        check_positive(self.labels_per_group, "labels_per_group")
        n_labels = len(self.labels)
        if n_labels == 0:
            raise SettingError("pathological partitioner: the label vocabulary is empty")
        if len(set(self.labels)) != n_labels:
            raise SettingError("pathological partitioner: the label vocabulary has duplicates")
        if self.labels_per_group > n_labels:
            raise SettingError(f"labels_per_group={self.labels_per_group} is more than the "
                               f"{n_labels} labels there are")
        if self.num_groups * self.labels_per_group < n_labels:
            raise SettingError(
                f"{self.num_groups} groups × {self.labels_per_group} labels each cannot hold "
                f"all {n_labels} labels; raise N or K so that N·K ≥ {n_labels}")
        if self.columns is None:
            object.__setattr__(self, "columns", (self.label_column,))
        # A deck of independently shuffled copies of the vocabulary, dealt k cards per group.
        rng = seeded_rng(self.seed, TAG_SHARDS)
        need = self.num_groups * self.labels_per_group
        deck = np.concatenate([rng.permutation(n_labels) for _ in range(-(-need // n_labels))])
        holders: dict[int, list[int]] = {i: [] for i in range(n_labels)}
        for j in range(self.num_groups):
            for i in range(self.labels_per_group):
                holders[int(deck[j * self.labels_per_group + i])].append(j)
        for i, label in enumerate(self.labels):
            self._holders[label] = np.asarray(sorted(set(holders[i])), np.int64)

    def groups_of(self, label: Label) -> np.ndarray:
        """The groups that hold ``label`` (sorted)."""
        return self._holders[label]

    def label_sets(self) -> dict[int, set[Label]]:
        """The labels each group may hold."""
        out: dict[int, set[Label]] = {j: set() for j in range(self.num_groups)}
        for label, groups in self._holders.items():
            for j in groups:
                out[int(j)].add(label)  # type: ignore[arg-type]
        return out

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        values, codes = _per_label(_labels(batch, self.label_column))
        u = ordinal_uniforms(ordinals, self.seed, TAG_SHARDS)
        groups = np.zeros(len(codes), np.int64)
        for code, value in enumerate(values):
            rows = np.flatnonzero(codes == code)
            holders = self._holders.get(value)
            if holders is None:
                raise KeyRowError(int(rows[0]), f"label {value!r} in column "
                                  f"{self.label_column!r} is not in the partitioner's "
                                  f"vocabulary of {len(self.labels)} labels")
            pick = np.minimum((u[rows] * len(holders)).astype(np.int64), len(holders) - 1)
            groups[rows] = holders[pick]
        return _with_nulls(groups, codes)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "partitioner": "label-shards", "num_groups": self.num_groups,
                "labels_per_group": self.labels_per_group, "label_column": self.label_column,
                "num_labels": len(self.labels), "seed": self.seed}


@dataclass(frozen=True, kw_only=True)
class PowerLawKey(KeyFunction):
    """Size skew: group j (0-based) receives a share ``(j+1)^-exponent / H`` of the examples.

    Group 0 is the largest; exponent 0 is IID, 1 is Zipf's law, larger is more skewed.
    Which group an example joins depends only on (seed, ordinal), never on its content.
    """

    num_groups: int
    exponent: float
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(self.num_groups, "num_groups")
        if not self.exponent >= 0:
            raise SettingError(f"exponent must be ≥ 0, got {self.exponent!r}")
        if self.columns is None:
            object.__setattr__(self, "columns", ())

    def shares(self) -> np.ndarray:
        """The promised expected fraction of examples in each group (sums to 1)."""
        w = np.arange(1, self.num_groups + 1, dtype=np.float64) ** -self.exponent
        return w / w.sum()

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        u = ordinal_uniforms(ordinals, self.seed, TAG_POWER)
        return pa.array(_inverse_cdf(np.cumsum(self.shares()), u), pa.int64())

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "partitioner": "power-law", "num_groups": self.num_groups,
                "exponent": self.exponent, "seed": self.seed}


def _int(text: str, spec: str, what: str, minimum: int = 1) -> int:
    try:
        n = int(text)
    except ValueError:
        n = minimum - 1
    if n < minimum:
        raise SettingError(f"key {spec!r}: {what} must be an integer ≥ {minimum}, got {text!r}")
    return n


def _float(text: str, spec: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingError(f"key {spec!r}: {what} must be a number, got {text!r}") from None


PARTITIONER_HELP = ("dirichlet:N:ALPHA:LABEL[:SEED] | pathological:N:K:LABEL:L[:SEED] | "
                    "power-law:N:EXPONENT[:SEED] | super:M:FIELD[:SEED]")


def parse_partitioner(spec: str) -> KeyFunction | None:
    """A partitioner KEYSPEC → KeyFunction; None if ``spec`` names no partitioner.

    ``pathological`` takes integer labels 0..L-1; for other vocabularies construct
    :class:`LabelShardsKey` in Python. Field names may not contain ':'.
    """
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if kind not in ("dirichlet", "pathological", "power-law", "super"):
        return None
    usage = {"dirichlet": "dirichlet:N:ALPHA:LABEL[:SEED]",
             "pathological": "pathological:N:K:LABEL:L[:SEED]",
             "power-law": "power-law:N:EXPONENT[:SEED]", "super": "super:M:FIELD[:SEED]"}[kind]
    need = {"dirichlet": 3, "pathological": 4, "power-law": 2, "super": 2}[kind]
    if len(parts) not in (need, need + 1) or not all(parts):
        raise SettingError(f"key {spec!r}: use {usage}")
    seed = _int(parts[need], spec, "SEED", 0) if len(parts) > need else 0
    if kind == "dirichlet":
        return DirichletLabelKey(spec=spec, num_groups=_int(parts[0], spec, "N"),
                                 alpha=_float(parts[1], spec, "ALPHA"), label_column=parts[2],
                                 seed=seed)
    if kind == "pathological":
        n_labels = _int(parts[3], spec, "L")
        return LabelShardsKey(spec=spec, num_groups=_int(parts[0], spec, "N"),
                              labels_per_group=_int(parts[1], spec, "K"), label_column=parts[2],
                              labels=tuple(range(n_labels)), seed=seed)
    if kind == "power-law":
        return PowerLawKey(spec=spec, num_groups=_int(parts[0], spec, "N"),
                           exponent=_float(parts[1], spec, "EXPONENT"), seed=seed)
    return SuperGroupKey(spec=spec, num_super_groups=_int(parts[0], spec, "M"),
                         field_name=parts[1], seed=seed)


__all__ = ["PARTITIONER_HELP", "DirichletLabelKey", "IidKey", "LabelShardsKey", "PowerLawKey",
           "SuperGroupKey", "ordinal_uniforms", "parse_partitioner", "super_group_mapping"]
