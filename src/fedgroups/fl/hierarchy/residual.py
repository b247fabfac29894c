"""Residual layer embeddings: routing least-attended key layers between sub-federations.

At a node whose children are several sub-federations that each mix their own children's
key layers by attention, each sub-federation offers its ``nu`` **least-attended** children
(the lowest attention received from their siblings in its last aggregation: the most
dissimilar ones) and the node routes every offer to the *other* sub-federations.  There
the routed keys join the columns of the attention (attended to, never overwritten) in the
next round.  With one sub-federation nothing is routed.

>>> import torch
>>> offers = {"w/a": [Residual(source="w/a/x", weight=1.0, keys={})],
...           "w/b": [Residual(source="w/b/y", weight=2.0, keys={})]}
>>> {k: [r.source for r in v] for k, v in route(offers).items()}
{'w/a': ['w/b/y'], 'w/b': ['w/a/x']}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedgroups.fl.hierarchy.attention import Params, received_from_siblings


@dataclass(frozen=True, kw_only=True)
class Residual:
    source: str  # path of the child whose key layers these are
    weight: float  # its weight (tokens) when it was offered
    keys: Params  # a copy of its key layers as it sent them up (before personalisation)

    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source, "weight": self.weight, "keys": self.keys}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Residual:
        return cls(source=str(state["source"]), weight=float(state["weight"]),
                   keys=dict(state["keys"]))


def least_attended(matrix: torch.Tensor, nu: int) -> list[int]:
    """Indices of the ``nu`` rows that received the least attention from their siblings.

    Ties go to the earlier row; with fewer rows than ``nu`` every row is returned.
    """
    received = received_from_siblings(matrix).tolist()
    order = sorted(range(len(received)), key=lambda i: (received[i], i))
    return sorted(order[: max(0, nu)])


def offer(names: Sequence[str], rows: Sequence[Params], weights: Sequence[float],
          matrix: torch.Tensor, nu: int) -> list[Residual]:
    """The residuals a sub-federation offers after an aggregation (copies of the rows)."""
    return [Residual(source=names[i], weight=float(weights[i]),
                     keys={n: t.detach().clone() for n, t in rows[i].items()})
            for i in least_attended(matrix, nu)]


def route(offers: Mapping[str, Sequence[Residual]]) -> dict[str, list[Residual]]:
    """Each sub-federation's pool: every other sub-federation's offers, in name order."""
    return {s: [r for other in sorted(offers) if other != s for r in offers[other]]
            for s in offers}
