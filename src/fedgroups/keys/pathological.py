"""``pathological:N:K:LABEL:L[:SEED]`` — at most K labels per group ("pathological" non-IID)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.keys.base import KeyFunction, KeyRowError, spec_fields, spec_int, spec_seed
from fedgroups.keys.partition_common import (
    Label,
    check_positive,
    groups_by_label,
    ordinal_uniforms,
    seeded_rng,
)


@dataclass(frozen=True, kw_only=True)
class LabelShardsKey(KeyFunction):
    """"Pathological" non-IID: every group holds examples of at most ``labels_per_group`` labels.

    The label vocabulary is given (``labels``), since no worker sees all the data. A deck
    of seeded shuffles of the vocabulary is dealt k cards per group, so each label is dealt
    ⌊N·k/L⌋ or ⌈N·k/L⌉ times, and its examples are spread uniformly over the groups that
    hold it. A group holds exactly k labels unless a deal crosses two shuffles and repeats
    one (then fewer). Needs N·k ≥ L, so that every label has a group. The KEYSPEC takes
    integer labels 0..L-1; for another vocabulary construct the class in Python.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = LabelShardsKey.from_spec("pathological:4:1:y:2", "4:1:y:2")
    >>> all(len(labels) == 1 for labels in key.label_sets().values())
    True
    >>> key.keys(pa.record_batch({"y": [0, 1]}), np.arange(2, dtype=np.uint64)).type
    DataType(int64)
    """

    usage = "pathological:N:K:LABEL:L[:SEED]"
    tag: ClassVar[int] = 0x5A4D

    num_groups: int
    labels_per_group: int
    label_column: str
    labels: tuple[Label, ...]
    seed: int = 0
    _holders: dict[Hashable, np.ndarray] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_spec(cls, spec: str, args: str) -> LabelShardsKey:
        parts = spec_fields(spec, args, cls.usage, 4, 1)
        n_labels = spec_int(parts[3], spec, "L")
        return cls(spec=spec, num_groups=spec_int(parts[0], spec, "N"),
                   labels_per_group=spec_int(parts[1], spec, "K"), label_column=parts[2],
                   labels=tuple(range(n_labels)), seed=spec_seed(parts, 4, spec))

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
        rng = seeded_rng(self.seed, self.tag)
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

    def _deal(self, label: Label, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A label's examples spread uniformly over the groups that hold it."""
        holders = self._holders.get(label)
        if holders is None:
            raise KeyRowError(int(rows[0]), f"label {label!r} in column "
                              f"{self.label_column!r} is not in the partitioner's "
                              f"vocabulary of {len(self.labels)} labels")
        return holders[np.minimum((u * len(holders)).astype(np.int64), len(holders) - 1)]

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        return groups_by_label(batch, self.label_column,
                               ordinal_uniforms(ordinals, self.seed, self.tag), self._deal)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "partitioner": "label-shards", "num_groups": self.num_groups,
                "labels_per_group": self.labels_per_group, "label_column": self.label_column,
                "num_labels": len(self.labels), "seed": self.seed}
