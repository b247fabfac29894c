"""A flat run's PNGs: rounds as recorded (rounds completed, from 1), and a personalization
plot that says what its marks are and how many eval clients it leaves out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedgroups.fl.plots import plot_losses, plot_personalization


@pytest.fixture
def figures(monkeypatch) -> list[Any]:
    """Every matplotlib figure saved during the test, kept for inspection."""
    from matplotlib.figure import Figure

    saved: list[Any] = []
    save = Figure.savefig

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def rows(rounds: int = 40, every: int = 10) -> list[dict[str, Any]]:
    """metrics.jsonl rows: round = rounds completed; eval and personalization columns at
    eval rounds (eval/<name>/skipped: no full sequence; pers/<name>/skipped: < 2)."""
    out = []
    for r in range(1, rounds + 1):
        row: dict[str, Any] = {"round": r, "train_loss": 5.0 - r / rounds}
        if r % every == 0:
            row.update({"eval/held/loss": 4.8 - r / rounds, "eval/held/skipped": 1.0,
                        "pers/held/clients": 4.0, "pers/held/skipped": 3.0})
        out.append(row)
    return out


def write_run(run: Path, metrics: bool = True) -> Path:
    run.mkdir()
    if metrics:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    pre = {i: 4.5 + i / 10 for i in range(4)}  # client k0 gets worse, the others better
    pers = [{"round": r, "dataset": "held", "key": f"k{i}", "pre": pre[i],
             "post": pre[i] - 0.3 if i else pre[i] + 0.1}
            for r in (20, 40) for i in range(4)]
    (run / "personalization.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pers))
    return run / "personalization.jsonl"


def test_loss_plot_draws_rounds_as_recorded(tmp_path: Path, figures: list[Any]) -> None:
    plot_losses(rows(), tmp_path / "loss.png")
    (ax,) = figures[0].axes
    assert ax.get_xlabel() == "round (rounds completed)"
    train, held = ax.lines
    assert list(train.get_xdata()) == list(range(1, 41))
    assert list(held.get_xdata()) == [10, 20, 30, 40]


def test_personalization_plot_legend_round_and_skipped_clients(tmp_path: Path,
                                                               figures: list[Any]) -> None:
    records = write_run(tmp_path / "run")
    out = plot_personalization(records, tmp_path / "pers.png")
    assert out is not None and out.read_bytes()[:4] == b"\x89PNG"
    (ax,) = figures[0].axes
    assert ax.get_title() == "held: 4 clients, after round 40"  # not "round 41"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["one client", "median", "mean"]
    assert ax.get_legend().get_title().get_text() == "3 of 4 clients improved"
    assert ax.get_xlabel() == ("skipped 3 with < 2 sequences, 1 with no full sequence "
                               "(of 8 sampled eval clients)")


def test_personalization_plot_says_when_skipped_counts_are_unknown(tmp_path: Path,
                                                                   figures: list[Any]) -> None:
    records = write_run(tmp_path / "run", metrics=False)
    plot_personalization(records, tmp_path / "pers.png")
    assert "skipped clients: unknown" in figures[0].axes[0].get_xlabel()


@pytest.mark.slow
def test_compare_real_tiny_flat_runs(tmp_path: Path, make_dataset: Any) -> None:
    """The flat trainer's own outputs, two algorithms and a second seed, compared."""
    from fl_testkit import make_records, tiny_config

    from fedgroups.fl.config import parse_config
    from fedgroups.fl.hierarchy.compare import compare
    from fedgroups.fl.simulation import run

    data = make_dataset(make_records(num_users=12))
    runs = []
    for name, over in (("avg0", {}), ("avg1", {"seed": 1}),
                       ("sgd", {"algorithm.name": "fedsgd"})):
        out = str(tmp_path / name)
        run(parse_config(tiny_config(data, out, rounds=2, **over)), echo=lambda m: None)
        runs.append(Path(out))
    result = compare(runs, tmp_path / "cmp")
    (experiment,) = result["experiments"]
    rows = {r.method: r for r in experiment.rows}
    assert set(rows) == {"fedavg", "fedsgd"} and len(rows["fedavg"].runs) == 2
    for row in rows.values():
        assert row.ppl["heldout"] is not None and row.ppl["heldout"].mean > 1
        assert row.pers_post is not None and row.steps.mean > 0
    assert {p.name for p in result["files"]} >= {"perplexity.png", "loss.png"}
