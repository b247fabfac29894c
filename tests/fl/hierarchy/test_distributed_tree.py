"""A tree run over torch.distributed (2 gloo ranks) equals the sequential tree run.

Every rank walks the whole tree; the clients of each leaf round are spread over the ranks
(cohort position i on rank i % 2) and the leaf's aggregate is all-reduced, so every rank
holds the same tree after every round (checked: both ranks' final parameters agree).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from _dist_worker import tree_worker

from fedgroups.fl.config import parse_config
from fedgroups.fl.hierarchy.evaluation import eval_params
from fedgroups.fl.hierarchy.runner import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["worldlm", "fl"])
def test_two_ranks_equal_the_sequential_tree(method: str, world_data: str, tmp_path: Path,
                                              world_config_factory: Any) -> None:
    over = {"rounds": 2, "cohort_size": 3, "hierarchy.method": method,
            "server": {"optimizer": "adam", "lr": 0.01}, "client.optimizer": "momentum",
            "client.lr": 0.1, "algorithm.weighting": "examples"}
    seq = run(parse_config(world_config_factory(world_data, tmp_path / "seq", **over)),
              echo=lambda m: None)
    cfg = world_config_factory(world_data, tmp_path / "dist", **over)
    out = tmp_path / "dist.pt"
    mp.spawn(tree_worker, args=(2, _free_port(), cfg, str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    leaves = [n.path for n in seq.root.walk() if n.is_leaf]
    assert sorted(ranks[0]["params"]) == sorted(leaves)
    for leaf in leaves:
        want = eval_params(seq.root, leaf, seq.summary.method)
        for got in ranks:
            for name, t in want.items():
                torch.testing.assert_close(got["params"][leaf][name], t, rtol=1e-4, atol=1e-5,
                                           msg=f"{leaf} {name} (rank {got['rank']})")
    # the records (rank 0's) count the same clients, tokens and losses
    for a, b in zip(seq.rows, ranks[0]["rows"]):
        assert (a["node"], a["round"], a["clients"], a["tokens"]) == \
               (b["node"], b["round"], b["clients"], b["tokens"])
        if a["train_loss"] == a["train_loss"]:
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
