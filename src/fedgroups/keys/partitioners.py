"""Synthetic partitioners: the hand-made heterogeneity of federated-learning papers as keys.

Each partitioner is a :class:`~fedgroups.keys.base.KeyFunction` in a file of its own, so
``fg.build(source, DirichletLabelKey(...), out)`` works on any engine. Each is computed
one batch at a time from the seed, the example's ordinal (its stable position in the
source) and, where it needs one, its label — never a pass over the whole dataset
(``keys/partition_common.py``). This module gathers them for import.

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

from fedgroups.keys.base import KeyFunction
from fedgroups.keys.dirichlet import DirichletLabelKey
from fedgroups.keys.iid import IidKey
from fedgroups.keys.partition_common import ordinal_uniforms
from fedgroups.keys.pathological import LabelShardsKey
from fedgroups.keys.power_law import PowerLawKey
from fedgroups.keys.registry import parse_key
from fedgroups.keys.super_group import SuperGroupKey, super_group_mapping

PARTITIONERS = ("iid", "dirichlet", "pathological", "power-law", "super")
PARTITIONER_HELP = ("dirichlet:N:ALPHA:LABEL[:SEED] | pathological:N:K:LABEL:L[:SEED] | "
                    "power-law:N:EXPONENT[:SEED] | super:M:FIELD[:SEED]")


def parse_partitioner(spec: str) -> KeyFunction | None:
    """A partitioner KEYSPEC → KeyFunction; None if ``spec`` names no partitioner."""
    return parse_key(spec) if spec.partition(":")[0] in PARTITIONERS else None


__all__ = ["PARTITIONER_HELP", "DirichletLabelKey", "IidKey", "LabelShardsKey", "PowerLawKey",
           "SuperGroupKey", "ordinal_uniforms", "parse_partitioner", "super_group_mapping"]
