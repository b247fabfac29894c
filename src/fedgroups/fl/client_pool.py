"""Clients of a cohort trained at once (``run.client_threads``): threads with a model each.

torch releases the GIL inside its kernels, so on a CPU a small model's clients train in
parallel threads nearly as well as in processes, without copying data between processes.
Each worker thread trains on its own copy of the run's model (made on its first client);
results come back in submission order and the caller aggregates them in that order, so a
run is bit-identical to training one client at a time. At most ``2 * threads`` results
wait to be taken: memory grows with the threads, never with the cohort.

Randomness: a worker never touches torch's global generator (threads share it), so models
with dropout are refused; client randomness comes from the explicit per-client generator.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

from fedgroups.fl.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def check_no_dropout(model: torch.nn.Module, threads: int) -> None:
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            raise ConfigError(
                f"run.client_threads {threads}: the model has dropout ({name or 'model'}, "
                f"p={m.p}); clients in threads would share torch's global random generator, so "
                "runs would not repeat. Set the model's dropout to 0 or run.client_threads: 1")


class ClientPool:
    """``threads`` worker threads, each training on its own copy of ``model``."""

    def __init__(self, model: torch.nn.Module, threads: int) -> None:
        check_no_dropout(model, threads)
        self.threads = threads
        self._template = model
        self._local = threading.local()
        # a new thread's intra-op thread count is set to the caller's (run.threads)
        self._executor = ThreadPoolExecutor(
            threads, thread_name_prefix="fedgroups-client",
            initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))

    def _call(self, fn: Callable[[torch.nn.Module, T], R], item: T) -> R:
        model = getattr(self._local, "model", None)
        if model is None:  # this thread's copy, made once (parameters are loaded per client)
            model = self._local.model = copy.deepcopy(self._template)
        return fn(model, item)

    def ordered(self, fn: Callable[[torch.nn.Module, T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn(model, item)`` for every item, run in the threads, yielded in item order.
        ``fn``'s result must not depend on ``model`` afterwards (the thread moves on to the
        next item): read a client's delta out of the model before returning it."""
        todo = iter(items)
        pending: deque[Future[R]] = deque(
            self._executor.submit(self._call, fn, it)
            for it in itertools.islice(todo, 2 * self.threads))
        try:
            while pending:
                result = pending.popleft().result()
                for it in itertools.islice(todo, 1):
                    pending.append(self._executor.submit(self._call, fn, it))
                yield result
        finally:
            for f in pending:  # the caller stopped early (an error): drop what has not begun
                f.cancel()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
