"""Entry point of one rank in test_distributed_tree.py (a module so that spawn can import it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def worker(rank: int, world_size: int, port: int, cfg: dict[str, Any], out: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))
    import torch
    import torch.distributed as dist

    from fedgroups.fl.config import parse_config
    from fedgroups.fl.hierarchy.evaluation import eval_params
    from fedgroups.fl.hierarchy.runner import run

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = run(parse_config(cfg), backend="distributed", echo=lambda m: None)
        leaves = [n.path for n in result.root.walk() if n.is_leaf]
        params = {leaf: eval_params(result.root, leaf, result.summary.method)
                  for leaf in leaves}
        torch.save({"params": params, "rows": result.rows, "rank": rank}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
