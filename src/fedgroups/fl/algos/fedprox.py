"""FedProx (Li et al., 2020, "Federated Optimization in Heterogeneous Networks").

Each client minimises its loss plus a proximal term that keeps it near the global weights
``w0`` it started from (the aggregated parameters, ``task.start``)::

    h(w) = F_k(w) + (mu / 2) * ||w - w0||^2        grad h(w) = grad F_k(w) + mu * (w - w0)

The local loop is FedAvg's (``fl/algorithms.py:client_update``): after every backward
pass (``after_backward``) the proximal gradient ``mu * (w - w0)`` is added to each
aggregated parameter's gradient, before clipping and the optimizer step.  Parameters kept
local (``algorithm.local_params``) get no proximal term.  With ``mu = 0`` nothing is added:
the run is FedAvg bit for bit.

Config::

    algorithm: {name: fedprox, mu: 0.01}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from fedgroups.fl.algorithm import Algorithm, ClientTask
from fedgroups.fl.algorithms import ClientUpdate, client_update
from fedgroups.fl.client_data import ClientData
from fedgroups.fl.config import ClientConfig, ConfigError


class FedProx(Algorithm):
    """FedAvg clients with a proximal term ``(mu/2)·||w - w_global||²`` (``mu >= 0``)."""

    name = "fedprox"

    def __init__(self, mu: float = 0.01) -> None:
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < math.inf:
            raise ConfigError(f"mu must be a finite number >= 0; got {mu!r}")
        self.mu = float(mu)

    def settings(self) -> dict[str, Any]:
        return {"mu": self.mu}

    def local_update(self, model: torch.nn.Module, data: ClientData, config: ClientConfig,
                     task: ClientTask, *, aggregated: Sequence[str], device: Any,
                     generator: torch.Generator) -> ClientUpdate:
        pull = self.proximal_pull(model, task.start, aggregated) if self.mu else None
        return client_update(model, data, config, "fedavg", start=task.start,
                             aggregated=aggregated, generator=generator, device=device,
                             after_backward=pull)

    def proximal_pull(self, model: torch.nn.Module, start: Mapping[str, torch.Tensor],
                      names: Sequence[str]) -> Callable[[], None]:
        """A function adding ``mu·(w - w0)``, the gradient of ``(mu/2)·||w - w0||²``, to the
        gradient of each parameter in ``names`` (``w0``: its value in ``start``)."""
        params = dict(model.named_parameters())
        centre = {n: start[n].to(params[n].device) for n in names}
        mu = self.mu

        def pull() -> None:
            with torch.no_grad():
                for n in names:
                    p = params[n]
                    if p.grad is None:  # unused by this step's loss
                        p.grad = mu * (p - centre[n])
                    else:
                        p.grad.add_(p - centre[n], alpha=mu)

        return pull
