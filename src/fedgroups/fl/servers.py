"""Server rules: the FedOpt family's adaptive optimizers (Reddi et al., 2021, "Adaptive
Federated Optimization", Algorithm 2) beside ``fl/algorithms.py``'s torch-optimizer server.

With Δ the round's mean client delta (a pseudo-gradient of -Δ), the server keeps::

    m = β1·m + (1 - β1)·Δ                                  (m starts at 0)
    v = v + Δ²                                   FedAdagrad
    v = β2·v + (1 - β2)·Δ²                       FedAdam
    v = v - (1 - β2)·Δ²·sign(v - Δ²)             FedYogi   (v starts at τ²)
    x = x + η·m / (√v + τ)

with no bias correction (as in the paper; ``server.optimizer: adam`` is torch's Adam, which
has it).  ``server.betas`` are (β1, β2), ``server.tau`` is τ, ``server.lr`` η.  FedAvgM is
server SGD with momentum (``server.momentum``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fedgroups.fl.algorithms import Server
from fedgroups.fl.config import ConfigError, OptimizerConfig

ADAPTIVE = ("fedadam", "yogi", "adagrad")


class AdaptiveServer(Server):
    """FedAdagrad / FedAdam / FedYogi over the aggregated parameters (float32 state)."""

    def __init__(self, params: Mapping[str, torch.Tensor], config: OptimizerConfig,
                 rule: str) -> None:
        if rule not in ADAPTIVE:
            raise ConfigError(f"server.optimizer: unknown adaptive rule {rule!r}; one of {ADAPTIVE}")
        betas = tuple(float(b) for b in config.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"server.betas must be two numbers in [0, 1) for the {rule} "
                              f"server rule; got {list(config.betas)}")
        self.params = {n: torch.nn.Parameter(t.detach().clone()) for n, t in params.items()}
        self.rule = rule
        self.beta1, self.beta2 = betas
        self.tau = float(getattr(config, "tau", 1e-3))
        self.m = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in self.params.items()}
        self.v = {n: torch.full_like(p, self.tau ** 2, dtype=torch.float32)
                  for n, p in self.params.items()}
        self.optimizer = None  # type: ignore[assignment]

    def step(self, mean_delta: Mapping[str, torch.Tensor], lr: float) -> None:
        b1, b2 = self.beta1, self.beta2
        with torch.no_grad():
            for n, p in self.params.items():
                d = mean_delta[n].to(torch.float32)
                m, v = self.m[n], self.v[n]
                m.mul_(b1).add_(d, alpha=1 - b1)
                d2 = d * d
                if self.rule == "adagrad":
                    v.add_(d2)
                elif self.rule == "fedadam":
                    v.mul_(b2).add_(d2, alpha=1 - b2)
                else:  # yogi
                    v.sub_((1 - b2) * d2 * torch.sign(v - d2))
                p.add_((lr * m / (v.sqrt() + self.tau)).to(p.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.snapshot(), "m": self.m, "v": self.v, "rule": self.rule}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "m" not in state or "v" not in state:
            raise ConfigError(f"the checkpoint's server has no adaptive state (m, v): it was "
                              f"not trained with the {self.rule} rule; resume with the run's "
                              "algorithm and server.optimizer")
        if state.get("rule", self.rule) != self.rule:
            raise ConfigError(f"the checkpoint's server rule is {state['rule']!r}, the config's "
                              f"{self.rule!r}: resume with the run's server.optimizer")
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["params"][n])
                self.m[n].copy_(state["m"][n])
                self.v[n].copy_(state["v"][n])


def make_server(params: Mapping[str, torch.Tensor], config: OptimizerConfig,
                rule: str | None = None) -> Server:
    """The server for ``rule`` (an algorithm's), else for ``config.optimizer``."""
    name = rule or config.optimizer
    if name in ADAPTIVE:
        return AdaptiveServer(params, config, name)
    if rule is not None and rule != config.optimizer:
        import dataclasses

        config = dataclasses.replace(config, optimizer=rule)
    return Server(params, config)
