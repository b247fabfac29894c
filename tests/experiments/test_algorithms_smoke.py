"""experiments/algorithms.py: FedAvg, FedSGD, FedProx and SCAFFOLD under the
meta-learning protocol, end to end at its --smoke scale, plus the pieces that decide
what the report says (which tuning is reused, what counts as beyond the seed spread)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def load(name: str) -> Any:
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


ALGS = ["FedAvg", "FedSGD", "FedProx", "SCAFFOLD"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("algorithms")
    code = load("algorithms").main(["--smoke", "--corpus", str(root / "corpus"),
                                    "--runs", str(root / "runs"),
                                    "--results", str(root / "results")])
    assert code == 0
    return root / "results"


def test_a_table_per_phase_with_every_algorithm_over_seeds(smoke: Path) -> None:
    for phase in ("pre", "post", "gain"):
        table = rows(smoke / f"personalization-{phase}.csv")
        assert [r["algorithm"] for r in table] == ALGS
        assert table[1]["settings"] == "server lr 0.003"  # FedSGD: no client lr
        assert "mu" in table[2]["settings"]  # FedProx's chosen mu
        for r in table:
            assert r["seeds"] == "2"
            for q in (10, 50, 90):
                assert "[" in r[f"p{q}"]  # mean [min–max] over seeds
                assert float(r[f"p{q}_min"]) <= float(r[f"p{q}_mean"]) <= float(r[f"p{q}_max"])
    assert (smoke / "personalization-post.md").read_text().startswith("| algorithm |")
    assert (smoke / "algorithms.png").stat().st_size > 0


def test_every_algorithm_trains_on_the_same_client_tokens(smoke: Path) -> None:
    by_seed: dict[str, set[float]] = {}
    for r in rows(smoke / "seeds.csv"):
        by_seed.setdefault(r["seed"], set()).add(float(r["client_tokens"]))
    assert len(by_seed) == 2 and all(len(v) == 1 and min(v) > 0 for v in by_seed.values())


def test_tuning_one_choice_per_algorithm_at_fedavgs_rates(smoke: Path) -> None:
    table = rows(smoke / "tuning.csv")
    chosen = {r["algorithm"]: r for r in table if r["chosen"] == "yes"}
    assert sorted(chosen) == ["fedavg", "fedprox", "fedsgd", "scaffold"]
    assert chosen["fedprox"]["mu"] != ""
    for alg in ("fedprox", "scaffold"):  # at FedAvg's server rate
        assert chosen[alg]["server_lr"] == chosen["fedavg"]["server_lr"]
    assert chosen["fedprox"]["client_lr"] == chosen["fedavg"]["client_lr"]


def test_differences_name_each_pair_and_a_verdict(smoke: Path) -> None:
    table = rows(smoke / "differences.csv")
    pairs = {(r["a"], r["b"]) for r in table}
    assert pairs == {("FedAvg", "FedSGD"), ("FedProx", "FedSGD"), ("SCAFFOLD", "FedSGD"),
                     ("FedProx", "FedAvg"), ("SCAFFOLD", "FedAvg")}
    assert {r["verdict"] for r in table} <= {"beyond seed spread", "within noise"}


def _context(tmp_path: Path, *, changed: bool = False) -> Any:
    common = load("common")
    return common.Context(scale=common.SMOKE, corpus=tmp_path / "no-corpus",
                          runs=tmp_path / "runs", results=tmp_path / "results",
                          changed=changed, log=lambda m: None)


def _tuning_table(path: Path, grid: list[tuple[str, str, str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algorithm", "client_lr", "server_lr", "val_loss", "train_loss", "chosen"])
        for alg, clr, slr, val in grid:
            w.writerow([alg, clr, slr, val, "6.0", ""])
    return path


def test_tuning_table_of_the_same_grid_is_reused_without_training(tmp_path: Path) -> None:
    algorithms = load("algorithms")
    table = _tuning_table(tmp_path / "tuning.csv",
                          [("fedavg", "0.3", "0.003", "5.5"), ("fedsgd", "-", "0.003", "5.9")])
    got = algorithms.base_tuning(_context(tmp_path), table)  # no corpus: training would fail
    assert [(r["algorithm"], r["val_loss"], r["source"]) for r in got] == [
        ("fedavg", 5.5, str(table)), ("fedsgd", 5.9, str(table))]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", ["other grid", "settings changed"])
def test_tuning_table_is_not_reused_for_another_grid_or_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    algorithms = load("algorithms")
    slr = "0.01" if case == "other grid" else "0.003"
    table = _tuning_table(tmp_path / "tuning.csv",
                          [("fedavg", "0.3", slr, "5.5"), ("fedsgd", "-", "0.003", "5.9")])
    ran = [{"algorithm": "fedavg", "client_lr": 0.3, "server_lr": 0.003, "val_loss": 1.0,
            "train_loss": 1.0}]
    monkeypatch.setattr(algorithms.tuning, "grid_rows", lambda ctx: ran)
    got = algorithms.base_tuning(_context(tmp_path, changed=case == "settings changed"), table)
    assert [(r["val_loss"], r["source"]) for r in got] == [(1.0, "this run")]


def test_a_difference_is_a_finding_only_beyond_the_seed_spread(tmp_path: Path) -> None:
    algorithms = load("algorithms")

    def row(alg: str, seed: int, pre: float) -> dict[str, Any]:
        out: dict[str, Any] = {"algorithm": alg, "seed": seed}
        for q in (10, 50, 90):
            out |= {f"pre_p{q}": pre, f"post_p{q}": pre - 0.1, f"gain_p{q}": 0.1}
        return out

    # FedAvg 5.0 / 5.2 against FedSGD 5.3 / 5.4: apart; the gains are equal: noise.
    seeds = [row("FedAvg", 0, 5.0), row("FedAvg", 1, 5.2),
             row("FedSGD", 0, 5.3), row("FedSGD", 1, 5.4)]
    got = {r["metric"]: r for r in algorithms.differences(
        _context(tmp_path), seeds, ("fedavg", "fedsgd"))}
    assert got["pre_p50"]["verdict"] == "beyond seed spread"
    assert got["pre_p50"]["a_minus_b"] == pytest.approx(-0.25)
    assert got["pre_p50"]["same_sign_every_seed"] is True
    assert got["gain_p50"]["verdict"] == "within noise"
    # overlapping ranges are noise even when every seed has the same sign
    seeds[1] = row("FedAvg", 1, 5.35)
    got = {r["metric"]: r for r in algorithms.differences(
        _context(tmp_path), seeds, ("fedavg", "fedsgd"))}
    assert got["pre_p50"]["verdict"] == "within noise"
    assert got["pre_p50"]["same_sign_every_seed"] is True


def test_a_client_lr_set_by_hand_gets_runs_of_its_own(tmp_path: Path) -> None:
    algorithms = load("algorithms")
    tuned = {"fedavg": algorithms.Tuned(client_lr=1.0, server_lr=0.003),
             "scaffold": algorithms.Tuned(client_lr=1.0, server_lr=0.003)}
    runs = algorithms.final_runs(_context(tmp_path), tuned, {"scaffold": 1.0})
    assert runs[("fedavg", 0)].name == "final/fedavg-constant-seed0"  # the tuned run
    assert runs[("scaffold", 0)].name == "final/scaffold-constant-seed0-c1"
    assert "client.lr=1.0" in runs[("scaffold", 1)].overrides
    with pytest.raises(SystemExit):  # FedSGD has no client lr
        algorithms.main(["--smoke", "--client-lr", "fedsgd=1"])
