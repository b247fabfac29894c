"""Entry points of one rank in test_distributed.py and hierarchy/test_distributed_tree.py
(a module so that spawn can import it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def _process_group(rank: int, world_size: int, port: int) -> Iterator[Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        yield torch
    finally:
        dist.destroy_process_group()


def worker(rank: int, world_size: int, port: int, cfg: dict[str, Any], out: str) -> None:
    """A flat run; rank 0 saves the final model and the metrics rows to ``out``."""
    with _process_group(rank, world_size, port) as torch:
        from fedgroups.fl.config import parse_config
        from fedgroups.fl.simulation import run

        result = run(parse_config(cfg), backend="distributed", echo=lambda m: None)
        if rank == 0:
            torch.save({"model": result.model.state_dict(), "rows": result.rows}, out)


def tree_worker(rank: int, world_size: int, port: int, cfg: dict[str, Any], out: str) -> None:
    """A tree run; every rank saves each leaf's evaluated parameters to ``out.<rank>``."""
    with _process_group(rank, world_size, port) as torch:
        from fedgroups.fl.config import parse_config
        from fedgroups.fl.hierarchy.evaluation import eval_params
        from fedgroups.fl.hierarchy.runner import run

        result = run(parse_config(cfg), backend="distributed", echo=lambda m: None)
        leaves = [n.path for n in result.root.walk() if n.is_leaf]
        params = {leaf: eval_params(result.root, leaf, result.summary.method)
                  for leaf in leaves}
        torch.save({"params": params, "rows": result.rows, "rank": rank}, f"{out}.{rank}")


