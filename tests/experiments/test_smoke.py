"""The experiment scripts run end to end at their --smoke scale and write their tables.

Both share one run directory, as they do at full scale: the schedules script reuses the
tuning runs and the constant-schedule runs of the meta-learning script.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def load(name: str):
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiments")
    for name in ("meta_learning", "schedules"):
        code = load(name).main(["--smoke", "--corpus", str(root / "corpus"),
                                "--runs", str(root / "runs"),
                                "--results", str(root / "results" / name)])
        assert code == 0
    return root


def test_meta_learning_tables_and_plot(smoke: Path) -> None:
    out = smoke / "results" / "meta_learning"
    table = rows(out / "personalization.csv")
    assert [(r["algorithm"], r["phase"]) for r in table] == [
        ("FedAvg", "pre"), ("FedAvg", "post"), ("FedSGD", "pre"), ("FedSGD", "post"),
        ("FedAvg", "gain (pre - post)"), ("FedSGD", "gain (pre - post)")]
    assert all("[" in r["p50"] for r in table)  # mean [min–max] over seeds
    assert (out / "personalization.md").read_text().startswith("| algorithm |")
    for check in rows(out / "orderings.csv"):  # equal compute: same client tokens
        assert float(check["client_tokens_fedavg"]) == float(check["client_tokens_fedsgd"]) > 0
    tuning = rows(out / "tuning.csv")
    assert sorted(r["algorithm"] for r in tuning if r["chosen"]) == ["fedavg", "fedsgd"]
    assert (out / "meta_learning.png").stat().st_size > 0


def test_schedules_table_and_plot(smoke: Path) -> None:
    out = smoke / "results" / "schedules"
    table = rows(out / "schedules.csv")
    for alg in ("FedAvg", "FedSGD"):
        scheds = [r["schedule"] for r in table if r["algorithm"] == alg]
        assert scheds == ["constant", "warmup_cosine", "warmup_exponential",
                          "(max - min over schedules)"]
    assert (out / "schedules.png").stat().st_size > 0
    # the constant-schedule runs were shared with the meta-learning script, not rerun
    assert len(list((smoke / "runs" / "final").iterdir())) == 3 * 2 * 2
