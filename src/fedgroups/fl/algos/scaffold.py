"""SCAFFOLD (Karimireddy et al., 2020, "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning"), Algorithm 1 with option II control variates.

The server keeps a control variate ``c`` and each client ``i`` its own ``c_i`` (zeros
until the client first takes part), both shaped like the aggregated parameters.  In a
round the server sends ``x`` (the global weights) and ``c``; the client takes ``K`` SGD
steps of size ``lr`` on the corrected gradient and updates its control variate::

    y <- y - lr * (g_i(y) - c_i + c)                     (K times, from y = x)
    c_i+ = c_i - c + (x - y) / (K * lr)                  (option II)

and returns ``y - x`` (the delta, aggregated like FedAvg's) and ``c_i+ - c_i`` (the
extras, summed over the round's clients).  After the usual server step on the deltas
(``server.lr`` is the global step size) the server moves its control variate::

    c <- c + (1 / N) * sum_i (c_i+ - c_i)                N = all clients of the federation

Notes:

* ``client.optimizer`` must be ``sgd`` (the rule above assumes plain SGD steps);
* the server step uses the run's ``algorithm.weighting``; the paper's is ``uniform``;
* with ``client.grad_clip_norm`` the clipped corrected gradient is what ``c_i`` sees;
* control variates are float32 and kept on the CPU; ``c`` is saved in checkpoints and
  every ``c_i`` with the engine's client state, so a resumed run continues exactly;
* clients keep state, so the backend must be ``sequential`` (the engine refuses
  ``distributed``); in a tree every leaf federation has its own ``c`` and ``c_i``.

Config::

    algorithm: {name: scaffold}
    client: {optimizer: sgd, lr: 0.1, local_steps: 10}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fedgroups.fl.algorithm import Algorithm, ClientTask
from fedgroups.fl.algorithms import ClientUpdate, Params, client_update
from fedgroups.fl.client_data import ClientData
from fedgroups.fl.config import ClientConfig, ConfigError


def zeros_like(template: Mapping[str, torch.Tensor], names: Sequence[str]) -> Params:
    """Float32 CPU zeros shaped like ``template[name]`` for each of ``names``."""
    return {n: torch.zeros(template[n].shape, dtype=torch.float32) for n in names}


def next_client_control(c_i: Mapping[str, torch.Tensor], c: Mapping[str, torch.Tensor],
                        delta: Mapping[str, torch.Tensor], *, steps: int, lr: float) -> Params:
    """Option II: ``c_i - c + (x - y) / (steps * lr)``, where ``x - y = -delta``.

    >>> out = next_client_control({"w": torch.tensor([1.0])}, {"w": torch.tensor([0.5])},
    ...                           {"w": torch.tensor([-0.4])}, steps=2, lr=0.1)
    >>> round(out["w"].item(), 6)
    2.5
    """
    scale = 1.0 / (steps * lr)
    return {n: c_i[n] - c[n] - delta[n].detach().to("cpu", torch.float32) * scale
            for n in c_i}


def next_server_control(c: Mapping[str, torch.Tensor], extras_sum: Mapping[str, torch.Tensor],
                        num_members: int) -> Params:
    """``c + (1 / num_members) * sum_i (c_i+ - c_i)``."""
    return {n: c[n] + extras_sum[n].to("cpu", torch.float32) / num_members for n in c}


class Scaffold(Algorithm):
    """SCAFFOLD with option II control variates (module docstring)."""

    name = "scaffold"
    client_state = True

    def __init__(self) -> None:
        self.c: Params | None = None  # None: zeros (made from the first round's shapes)

    def check_client(self, client: ClientConfig) -> None:
        """ConfigError unless clients take plain SGD steps (callable before a run starts)."""
        if client.optimizer != "sgd":
            raise ConfigError(f"algorithm scaffold needs client.optimizer: sgd (its control "
                              f"variates assume plain SGD steps); got {client.optimizer!r}")

    def configure(self, key: Any, ctx: Any) -> dict[str, Any]:
        return {"c": self.c}

    def local_update(self, model: torch.nn.Module, data: ClientData, config: ClientConfig,
                     task: ClientTask, *, aggregated: Sequence[str], device: Any,
                     generator: torch.Generator) -> ClientUpdate:
        self.check_client(config)
        c = task.payload.get("c") or zeros_like(task.start, aggregated)
        c_i = task.state if task.state is not None else zeros_like(task.start, aggregated)
        params = dict(model.named_parameters())
        correction = {n: (c[n] - c_i[n]).to(params[n].device, params[n].dtype)
                      for n in aggregated}

        def correct() -> None:  # g -> g - c_i + c
            for n in aggregated:
                p = params[n]
                if p.grad is None:  # unused in this step: its gradient is 0
                    p.grad = correction[n].clone()
                else:
                    p.grad.add_(correction[n])

        update = client_update(model, data, config, "fedavg", start=task.start,
                               aggregated=aggregated, generator=generator, device=device,
                               after_backward=correct)
        if not update.finite or update.steps == 0:
            return update
        delta = dict(update.delta)
        new_c_i = next_client_control(c_i, c, delta, steps=update.steps, lr=config.lr)
        return dataclasses.replace(
            update, delta=list(delta.items()), state=new_c_i,
            extras={n: new_c_i[n] - c_i[n] for n in aggregated})

    def server_update(self, extras: Mapping[str, torch.Tensor], stats: Mapping[str, float],
                      ctx: Any) -> None:
        if not extras or ctx.num_members <= 0:
            return
        c = self.c if self.c is not None else zeros_like(extras, list(extras))
        self.c = next_server_control(c, extras, ctx.num_members)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.c is None else {"c": self.c}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        c = state.get("c")
        self.c = None if c is None else {n: t.to("cpu", torch.float32) for n, t in c.items()}
