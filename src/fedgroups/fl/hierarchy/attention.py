"""Attention aggregation of key layers: pure functions over named tensors.

A federation with children c = 1..R (those that took part in the round) and E residual
keys routed from other sub-federations personalises each child's key layers K, tensor by
tensor::

    s_cj = cos(K_c[t], K_j[t])                      j over the R children, then E residuals
    a_cj = w_j exp(s_cj / tau) / sum_k w_k exp(s_ck / tau)
    K_c[t] <- sum_j a_cj K_j[t]

The softmax is **weighted by the columns' weights** w_j (their tokens), so tau -> inf gives
exactly the weighted mean the rest of the tree uses and tau -> 0 keeps each child's own K
(a child's similarity to itself, 1, is the largest).  ``cos`` is taken on the parameters
themselves, flattened, with cos(x, x) = 1 by definition (also for x = 0).

>>> import torch
>>> ks = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 1.0])}]
>>> mixed, a = attend(ks, [1.0, 1.0], tau=1e-3)
>>> mixed[0]["w"].tolist(), a.tolist()
([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
>>> mixed, a = attend(ks, [1.0, 3.0], tau=1e9)
>>> mixed[0]["w"].tolist()
[0.25, 0.75]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

Params = dict[str, torch.Tensor]


def cosine_matrix(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """(n, n) float64 cosine similarities of flattened ``tensors``; the diagonal is 1."""
    # float64: children's K often differ by 1e-6 relative, which float32 cannot resolve.
    x = torch.stack([t.detach().reshape(-1).to(torch.float64) for t in tensors])  # (n, numel)
    gram = x @ x.T
    norms = gram.diagonal().clamp_min(0).sqrt()
    cos = gram / (norms[:, None] * norms[None, :]).clamp_min(1e-30)
    cos = cos.clamp(-1.0, 1.0)
    cos.fill_diagonal_(1.0)
    return cos


def attention_weights(similarity: torch.Tensor, weights: torch.Tensor, tau: float
                      ) -> torch.Tensor:
    """Row-wise softmax of ``similarity / tau + log(weights)`` (float64, rows sum to 1)."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0; got {tau}")
    logits = similarity.to(torch.float64) / tau + weights.to(torch.float64).log()[None, :]
    return torch.softmax(logits, dim=1)


def mix(rows_weights: torch.Tensor, values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``out[c] = sum_j rows_weights[c, j] * values[j]`` (zero weights skipped exactly)."""
    out = []
    for c in range(rows_weights.shape[0]):
        acc = torch.zeros_like(values[0], dtype=torch.float64)
        for j, a in enumerate(rows_weights[c].tolist()):
            if a != 0.0:
                acc.add_(values[j].to(torch.float64), alpha=a)
        out.append(acc.to(values[0].dtype))
    return out


def attend(rows: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float], *,
           tau: float, residuals: Sequence[Mapping[str, torch.Tensor]] = (),
           residual_weights: Sequence[float] = ()) -> tuple[list[Params], torch.Tensor]:
    """Personalised K for each row, and the (R, R + E) attention averaged over tensors.

    Residuals are columns only: attended to, never overwritten.  With no key tensors the
    rows come back unchanged and the matrix is the identity padded with zeros.
    """
    if len(rows) != len(weights) or len(residuals) != len(residual_weights):
        raise ValueError("one weight per row and per residual")
    n_rows, values = len(rows), [*rows, *residuals]
    w = torch.tensor([*weights, *residual_weights], dtype=torch.float64)
    if not bool((w > 0).all()):
        raise ValueError(f"attention weights must be > 0; got {w.tolist()}")
    names = sorted(rows[0]) if rows else []
    out: list[Params] = [{} for _ in range(n_rows)]
    total = torch.zeros(n_rows, len(values), dtype=torch.float64)
    for name in names:
        column = [v[name] for v in values]
        a = attention_weights(cosine_matrix(column)[:n_rows], w, tau)  # (R, R + E)
        total += a
        for c, t in enumerate(mix(a, column)):
            out[c][name] = t
    if not names:
        total[:, :n_rows] = torch.eye(n_rows, dtype=torch.float64)
        return [dict(r) for r in rows], total
    return out, total / len(names)


def weighted_mean(values: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
                  ) -> Params:
    """sum_j w_j values[j] / sum_j w_j, tensor by tensor (accumulated in float64)."""
    total = math.fsum(weights)
    if not values or total <= 0:
        raise ValueError("weighted_mean needs values with a positive total weight")
    a = torch.tensor([[w / total for w in weights]], dtype=torch.float64)
    return {n: mix(a, [v[n] for v in values])[0] for n in values[0]}


def received_from_siblings(matrix: torch.Tensor) -> torch.Tensor:
    """(R,) attention each row received from the other rows (its column sum minus self)."""
    n = matrix.shape[0]
    square = matrix[:, :n]
    return square.sum(dim=0) - square.diagonal()
