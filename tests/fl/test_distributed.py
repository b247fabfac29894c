"""torch.distributed backend: 2 real processes over gloo give the sequential model."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from _dist_worker import worker
from fl_testkit import make_records, real_reader, tiny_config

from fedgroups.fl.config import parse_config
from fedgroups.fl.simulation import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("client_threads", [1, 2])
def test_two_ranks_equal_sequential(make_dataset, tmp_path: Path, client_threads: int) -> None:
    if not real_reader():
        pytest.skip("spawned ranks need a dataset on disk (the fedgroups reader)")
    data = make_dataset(make_records(16))
    over = {"rounds": 3, "cohort_size": 5, "server.optimizer": "adam", "server.lr": 0.01,
            "client.optimizer": "momentum", "client.lr": 0.1, "algorithm.weighting": "examples"}
    seq = run(parse_config(tiny_config(data, str(tmp_path / "seq"), **over)),
              echo=lambda m: None)
    out = tmp_path / "dist.pt"
    # each rank may train its share of the cohort in threads (run.client_threads)
    cfg = tiny_config(data, str(tmp_path / "dist"), **over,
                      **{"run.client_threads": client_threads})
    mp.spawn(worker, args=(2, _free_port(), cfg, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    for name, p in seq.model.state_dict().items():
        torch.testing.assert_close(got["model"][name], p, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(seq.rows, got["rows"]):
        assert a["clients"] == b["clients"] and a["tokens"] == b["tokens"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert got["rows"][-1]["eval/heldout/loss"] == pytest.approx(
        seq.rows[-1]["eval/heldout/loss"], rel=1e-4)
