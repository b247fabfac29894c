"""benchmarks/peers/flower_sim.py: its workload is a valid config, and without Flower it says
what to install (CI has no Flower: Ray is large, so it is the opt-in ``peers`` extra)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers" / "flower_sim.py"


def _module():
    spec = importlib.util.spec_from_file_location("flower_sim", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_workload_is_a_valid_training_config() -> None:
    from fedgroups.fl.config import parse_config

    args = argparse.Namespace(seq_len=64, local_steps=4, batch_size=8, max_sequences=32,
                              client_threads=2, client_optimizer="adam")
    cfg = parse_config(_module().make_config("data", "tok", "out", 64, 6, args))
    assert (cfg.cohort_size, cfg.rounds, cfg.run.client_threads) == (64, 6, 2)
    assert (cfg.algorithm.name, cfg.algorithm.weighting, cfg.server.lr) == ("fedavg", "tokens", 1.0)


@pytest.mark.skipif(importlib.util.find_spec("flwr") is not None, reason="Flower is installed")
def test_without_flower_it_says_what_to_install() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert 'pip install -e ".[fl,peers]"' in out.stderr
    assert "Traceback" not in out.stderr
