"""Where a cohort's clients run: one process (sequential) or split over torch.distributed ranks.

A backend answers two questions: which cohort positions this process trains, and how the
partial aggregates of all processes are combined.  Every rank then applies the same server
update to the same reduced aggregate, so the global model stays identical everywhere.
"""

from __future__ import annotations

import os
from typing import Literal, Protocol

from fedgroups.fl.algorithms import Aggregator
from fedgroups.fl.errors import BackendError, ConfigError

BackendName = Literal["sequential", "distributed"]


class Backend(Protocol):
    rank: int
    world_size: int

    def positions(self, cohort_size: int) -> range: ...

    def reduce(self, aggregate: Aggregator) -> None: ...

    def barrier(self) -> None: ...


class SequentialBackend:
    rank = 0
    world_size = 1

    def positions(self, cohort_size: int) -> range:
        return range(cohort_size)

    def reduce(self, aggregate: Aggregator) -> None:
        pass

    def barrier(self) -> None:
        pass


class DistributedBackend:
    """Cohort position ``i`` runs on rank ``i % world_size``; aggregates are all-reduced.

    Uses the default process group, initialising it from the ``torchrun`` environment
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when needed.
    """

    def __init__(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            if "RANK" not in os.environ:
                raise BackendError(
                    "backend 'distributed' needs torch.distributed: launch with "
                    "`torchrun --nproc-per-node N -m fedgroups.fl.cli train ...`"
                )
            dist.init_process_group(backend="gloo")
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def positions(self, cohort_size: int) -> range:
        return range(self.rank, cohort_size, self.world_size)

    def reduce(self, aggregate: Aggregator) -> None:
        aggregate.all_reduce()

    def barrier(self) -> None:
        self._dist.barrier()


def make_backend(name: BackendName) -> Backend:
    if name == "sequential":
        return SequentialBackend()
    if name == "distributed":
        return DistributedBackend()
    raise ConfigError(f"--backend must be one of 'sequential', 'distributed'; got {name!r}")
