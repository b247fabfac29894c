"""Ordered prefetch: compute ``fn(item)`` a few items early on threads, yield in order.

pyarrow releases the GIL while it reads and decodes, so a couple of threads keep the
consumer fed while it works on the current group. Order never depends on thread timing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], *, ahead: int,
                 num_threads: int) -> Iterator[R]:
    """``fn(item)`` for each item, in order, with up to ``ahead`` results computed early.

    ``ahead=0`` or ``num_threads=0`` runs ``fn`` in the caller's thread. An exception
    raised by ``fn`` surfaces at that item's place in the order. Closing the generator
    drops work not yet started.
    """
    if ahead < 0 or num_threads < 0:
        raise ValueError(f"prefetch and num_threads must be >= 0, got {ahead}, {num_threads}")
    if ahead == 0 or num_threads == 0:
        for item in items:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="fedgroups-prefetch")
    pending: deque[Future[R]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
