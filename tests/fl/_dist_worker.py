"""Entry point of one rank in test_distributed.py (a module so that spawn can import it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def worker(rank: int, world_size: int, port: int, cfg: dict[str, Any], out: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import torch
    import torch.distributed as dist

    from fedgroups.fl.config import parse_config
    from fedgroups.fl.simulation import run

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = run(parse_config(cfg), backend="distributed", echo=lambda m: None)
        if rank == 0:
            torch.save({"model": result.model.state_dict(), "rows": result.rows}, out)
    finally:
        dist.destroy_process_group()
