"""The federated algorithm interface: what runs on a client, what the server sends and keeps.

One round of any federation (``fl/engine.py``) is::

    select cohort -> configure(client) -> local_update(client) -> processors -> aggregate
                  -> server step -> server_update(extras)

An :class:`Algorithm` owns the client side and the server-to-client channel:

* :meth:`Algorithm.configure` — what the server sends one selected client besides the
  global weights (control variates, a proximal centre, per-client settings), as a dict;
* :meth:`Algorithm.local_update` — trains the client from a :class:`ClientTask` (global
  weights, that payload, and the client's own state from its previous participation) and
  returns a :class:`~fedgroups.fl.algorithms.ClientUpdate`, whose ``delta`` is aggregated
  with the run's weighting, whose ``extras`` are summed over the round's clients (weight 1
  each) and whose ``state`` the client keeps for next time;
* :meth:`Algorithm.server_update` — the server's own algorithm state moves with the sum
  of ``extras`` (e.g. SCAFFOLD's global control variate);
* ``server_optimizer`` — the FedOpt server rule it implies (FedAdam, FedYogi, ...), if any.

The base class **is** FedAvg: override only what your algorithm changes (see
``docs/training.md``, "Adding an algorithm").  Built-ins live one per file in
``fl/algos/``; a config names one with ``algorithm: {name: fedprox, mu: 0.01}`` or a user's
with ``algorithm: {factory: "pkg.mod:make", ...}``.

Client state is kept by the engine in memory on the process that trains the client,
keyed by the client's group key, and saved in every checkpoint: memory grows with the
number of distinct clients that have participated (not with the cohort).  An algorithm
with ``client_state = True`` therefore needs a backend that trains every client in one
process (``sequential``, with or without ``run.client_threads``); the engine refuses
``distributed`` for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedgroups.fl.algorithms import ClientUpdate, Params, client_update
from fedgroups.fl.client_data import ClientData
from fedgroups.fl.config import ALGORITHMS, ClientConfig, ConfigError


@dataclass(frozen=True, kw_only=True)
class ClientTask:
    """What the server sends one selected client for one round."""

    key: Any
    start: Mapping[str, torch.Tensor]  # global weights of the aggregated parameters
    payload: Mapping[str, Any]  # Algorithm.configure(key, ctx)
    state: Params | None  # what the client kept last time it took part (None: first time)


class Algorithm:
    """FedAvg: client optimizer steps from the global weights, no extras, no state.

    Subclasses set ``name`` and override the hooks they change.  Constructor keyword
    arguments are the algorithm's settings (``algorithm: {name: ..., <setting>: ...}``);
    :meth:`settings` returns them for ``config.yaml``.
    """

    name = "fedavg"
    client_state = False  # True: clients keep a state between participations
    server_optimizer: str | None = None  # the server rule it implies, else server.optimizer
    one_gradient = False  # FedSGD-like: the update is one gradient, client steps unused

    def settings(self) -> dict[str, Any]:
        """The algorithm's settings as recorded in config.yaml (``algorithm.params``)."""
        return {}

    def check_client(self, config: ClientConfig) -> None:
        """Raise ConfigError if the algorithm cannot train with these client settings
        (called before a run starts)."""

    def configure(self, key: Any, ctx: Any) -> dict[str, Any]:
        """The payload sent to client ``key`` this round (``ctx``: the RoundContext)."""
        return {}

    def local_update(self, model: torch.nn.Module, data: ClientData, config: ClientConfig,
                     task: ClientTask, *, aggregated: Sequence[str], device: Any,
                     generator: torch.Generator) -> ClientUpdate:
        """Train ``model`` (already loaded with ``task.start``) on ``data``."""
        return client_update(model, data, config, "fedsgd" if self.one_gradient else "fedavg",
                             start=task.start, aggregated=aggregated, generator=generator,
                             device=device)

    def server_update(self, extras: Mapping[str, torch.Tensor], stats: Mapping[str, float],
                      ctx: Any) -> None:
        """After the server step: ``extras`` is the sum of this round's clients' extras."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def valid_settings(fn: Callable[..., Any]) -> list[str]:
    """Keyword settings a constructor or factory accepts (for error messages)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def make_algorithm(name: str, factory: str | None, params: Mapping[str, Any]) -> Algorithm:
    """The algorithm ``algorithm: {name | factory, **params}`` describes, or ConfigError."""
    from fedgroups.fl.plugins import load_callable

    if factory is not None:
        fn = load_callable(factory, "algorithm.factory")
        where = f"algorithm.factory {factory!r}"
    else:
        if name not in ALGORITHMS:
            raise ConfigError(f"algorithm.name: unknown algorithm {name!r}; built-ins: "
                              f"{', '.join(sorted(ALGORITHMS))} (or algorithm.factory: "
                              "'pkg.mod:fn')")
        fn = load_callable(ALGORITHMS[name], "algorithm.name")
        where = f"algorithm {name!r}"
    valid = valid_settings(fn)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(valid) or '(none)'}")
    try:
        algo = fn(**params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    if not callable(getattr(algo, "local_update", None)):
        raise ConfigError(f"{where} returned {type(algo).__name__}, not an algorithm "
                          "(subclass fedgroups.fl.algorithm.Algorithm)")
    return algo
