"""FedProx (Li et al., 2020, "Federated Optimization in Heterogeneous Networks").

Each client minimises its loss plus a proximal term that keeps it near the global weights
``w0`` it started from (the aggregated parameters, ``task.start``)::

    h(w) = F_k(w) + (mu / 2) * ||w - w0||^2        grad h(w) = grad F_k(w) + mu * (w - w0)

The local loop is FedAvg's (``fl/algorithms.py:client_update``): the proximal gradient
``mu * (w - w0)`` is added to each aggregated parameter's gradient during backward (a
tensor hook, :func:`gradient_hooks`), so it is there before clipping and the optimizer
step.  Parameters kept local (``algorithm.local_params``) get no proximal term.  With
``mu = 0`` no hook is installed: the run is FedAvg bit for bit.

Config::

    algorithm: {name: fedprox, mu: 0.01}
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from fedgroups.fl.algorithm import Algorithm, ClientTask
from fedgroups.fl.algorithms import ClientUpdate, client_update
from fedgroups.fl.client_data import ClientData
from fedgroups.fl.config import ClientConfig, ConfigError

# (parameter name, its current value) -> the tensor added to that parameter's gradient
GradientTerm = Callable[[str, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def gradient_hooks(model: torch.nn.Module, names: Sequence[str], term: GradientTerm
                   ) -> Iterator[None]:
    """While inside, every backward adds ``term(name, value)`` to the gradient of each
    parameter in ``names`` (once per backward, whatever the parameter's uses in the graph).

    A parameter's hook runs before its gradient is accumulated into ``.grad``, so the
    extra term is seen by clipping and by the optimizer step that follow.
    """
    params = dict(model.named_parameters())
    handles = []

    def make(name: str, p: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda grad: grad + term(name, p.detach()).to(grad.dtype)

    try:
        for n in names:
            p = params[n]
            if p.requires_grad:
                handles.append(p.register_hook(make(n, p)))
        yield
    finally:
        for h in handles:
            h.remove()


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
        run = lambda: client_update(model, data, config, "fedavg", start=task.start,  # noqa: E731
                                    aggregated=aggregated, generator=generator, device=device)
        if self.mu == 0:
            return run()
        centre = _on_device(task.start, aggregated, model)
        mu = self.mu
        with gradient_hooks(model, aggregated, lambda n, w: mu * (w - centre[n])):
            return run()


def _on_device(start: Mapping[str, torch.Tensor], names: Sequence[str],
               model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``start``'s tensors of ``names`` on the device of the model's parameters."""
    params = dict(model.named_parameters())
    return {n: start[n].to(params[n].device) for n in names}
