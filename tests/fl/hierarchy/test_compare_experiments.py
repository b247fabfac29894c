"""fedgroups compare on globs as users write them: runs of other experiments kept apart,
the comparison's own output folder skipped, flat runs compared too, PNGs of a sensible size
with a fixed colour per method."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_compare import LEAVES, PPL, fake_run

from fedgroups.cli import main
from fedgroups.fl.hierarchy import plots as hplots
from fedgroups.fl.hierarchy.compare import RunDirError, compare, load_run


def set_config(run: Path, **changes: Any) -> Path:
    """Rewrite the run's config.yaml as a fuller resolved config with dotted ``changes``."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.setdefault("data", {"path": "out/world", "text_column": "text"})
    config.setdefault("model", {"preset": "tiny", "seq_len": 32, "d_model": None})
    config.setdefault("output_dir", str(run))
    config.setdefault("run", {"progress": True, "threads": 1, "checkpoint_every": 10})
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def world_runs(root: Path) -> list[Path]:
    """runs/world-fl, -worldlm (seeds 0 and 1, told apart only by seed, output_dir and
    run settings) and world-tiny: another experiment (other data and model) whose method
    is worldlm too."""
    fl = set_config(fake_run(root, "world-fl", "fl", ppl=PPL["fl"]))
    w0 = set_config(fake_run(root, "world-worldlm", "worldlm", ppl=PPL["worldlm"]))
    w1 = set_config(fake_run(root, "world-worldlm-s1", "worldlm", seed=1,
                             ppl={k: v + 2 for k, v in PPL["worldlm"].items()}),
                    **{"run.progress": False, "run.threads": 2, "run.checkpoint_every": 5})
    tiny = set_config(fake_run(root, "world-tiny", "worldlm",
                               ppl={k: 500.0 for k in LEAVES}),
                      **{"data.path": "out/world-tiny", "model.d_model": 32})
    return [fl, w0, w1, tiny]


def test_another_experiment_matched_by_the_glob_is_not_averaged_in(tmp_path: Path) -> None:
    runs = world_runs(tmp_path / "runs")
    result = compare(sorted(runs), tmp_path / "cmp", plots=False)
    first, second = result["experiments"]
    assert [r.path.name for r in first.runs] == ["world-fl", "world-worldlm",
                                                  "world-worldlm-s1"]
    worldlm = next(r for r in first.rows if r.method == "worldlm")
    assert len(worldlm.runs) == 2  # the two seeds, not world-tiny's 500s
    assert worldlm.ppl["world/slavic/ru"].text() == "42.00 [41.00–43.00]"
    assert [r.path.name for r in second.runs] == ["world-tiny"]
    assert second.differs == {"data.path": "out/world-tiny", "model.d_model": "32"}
    text = result["text"]
    assert "the runs are 2 experiments" in text
    assert "## experiment 2 of 2: 1 run(s):" in text
    assert "settings that differ between the experiments: data.path=out/world-tiny, " \
        "model.d_model=32" in text
    assert text.count("| method | runs |") == 2
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "data.path=out/world, model.d_model=null" in md


def test_a_recorded_dataset_checksum_tells_datasets_apart(tmp_path: Path) -> None:
    """Same data.path, another dataset (its index checksum, in config or summary)."""
    a = set_config(fake_run(tmp_path, "a", "fl", ppl=PPL["fl"]),
                   **{"data.index_sha256": "aa" * 32})
    b = set_config(fake_run(tmp_path, "b", "fl", ppl=PPL["fl"], seed=1),
                   **{"data.index_sha256": "bb" * 32})
    result = compare([a, b], tmp_path / "cmp", plots=False)
    assert [len(e.runs) for e in result["experiments"]] == [1, 1]
    assert result["experiments"][1].differs == {"data.index_sha256": "bb" * 6}
    c = set_config(fake_run(tmp_path, "c", "fl", ppl=PPL["fl"], seed=2))
    summary = json.loads((c / "summary.json").read_text())
    summary["dataset"] = {"path": "out/world", "index_sha256": "cc" * 32}
    (c / "summary.json").write_text(json.dumps(summary))
    result = compare([a, c], tmp_path / "cmp2", plots=False)
    assert [len(e.runs) for e in result["experiments"]] == [1, 1]
    e, f = (set_config(fake_run(tmp_path, n, "fl", ppl=PPL["fl"], seed=i)) for i, n in
            enumerate(("e", "f")))
    for run, digest in ((e, "ee"), (f, "ff")):
        (run / "datasets.json").write_text(json.dumps(
            {"dataset out/world": {"path": "out/world", "index_sha256": digest * 32}}))
    result = compare([e, f], tmp_path / "cmp4", plots=False)
    assert result["experiments"][1].differs == {"data.index_sha256": "out/world@" + "ff" * 6}
    # a run that records no checksum is told apart by data.path alone
    d = set_config(fake_run(tmp_path, "d", "fl", ppl=PPL["fl"], seed=3))
    assert [len(e.runs) for e in compare([a, d], tmp_path / "cmp3", plots=False)
            ["experiments"]] == [2]


def test_experiments_get_their_own_plots(tmp_path: Path) -> None:
    result = compare(world_runs(tmp_path / "runs"), tmp_path / "cmp")
    names = {str(p.relative_to(tmp_path / "cmp")) for p in result["files"]}
    assert {"compare.md", "compare.csv", "experiment-1/perplexity.png",
            "experiment-2/perplexity.png", "experiment-2/loss.png"} <= names
    csv_lines = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert csv_lines[0].startswith("experiment,method,runs,")
    assert [ln.split(",")[:3] for ln in csv_lines[1:]] == [
        ["1", "fl", "1"], ["1", "worldlm", "2"], ["2", "worldlm", "1"]]


def test_the_output_folder_matched_by_the_glob_is_skipped(tmp_path: Path, capsys) -> None:
    """`fedgroups compare runs/world-* --out runs/world-compare`, twice."""
    runs = tmp_path / "runs"
    world_runs(runs)
    out = runs / "world-compare"
    for _ in range(2):
        args = [str(p) for p in sorted(runs.glob("world-*"))]
        assert main(["compare", *args, "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {out}: not a run (no config.yaml or metrics.jsonl)" in printed
    with pytest.raises(RunDirError, match="none of the 1 folder"):
        compare([out], tmp_path / "again")
    assert main(["compare", str(runs / "missing"), "--out", str(out)]) == 2


# --- flat runs ------------------------------------------------------------------------------

def flat_run(root: Path, name: str, *, algorithm: str = "fedavg", seed: int = 0,
             schedule: str = "constant", rounds: int = 4, every: int = 2,
             loss: float = 4.0, steps: int = 10) -> Path:
    """A flat run as the trainer writes it: config.yaml, metrics.jsonl (round = rounds
    completed), eval and personalization columns at eval rounds, personalization.jsonl."""
    run = root / name
    run.mkdir(parents=True)
    config = {"data": {"path": "out/stdlib"}, "output_dir": str(run), "rounds": rounds,
              "cohort_size": 8, "seed": seed, "model": {"preset": "tiny"},
              "algorithm": {"name": algorithm, "weighting": "tokens"},
              "server": {"lr": 1.0, "schedule": {"name": schedule}},
              "eval": {"every": every}, "run": {"progress": True}, "hierarchy": None}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    rows, pers = [], []
    for r in range(1, rounds + 1):
        row = {"round": r, "train_loss": loss + 1 / r, "clients": 8.0, "skipped": 0.0,
               "tokens": 1000.0, "steps": float(steps), "seconds": 0.5}
        if r % every == 0 or r == rounds:
            for name_, offset in (("heldout", 0.0), ("other", 0.5)):
                ev = loss + offset + 1 / r
                row.update({f"eval/{name_}/loss": ev, f"eval/{name_}/ppl": math.exp(ev),
                            f"eval/{name_}/clients": 5.0, f"eval/{name_}/skipped": 1.0,
                            f"pers/{name_}/pre_p50": ev, f"pers/{name_}/post_p50": ev - 0.2,
                            f"pers/{name_}/skipped": 2.0})
                pers += [{"round": r, "dataset": name_, "key": f"k{i}", "pre": ev + i / 10,
                          "post": ev + i / 10 - 0.2} for i in range(3)]
        rows.append(row)
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    (run / "personalization.jsonl").write_text("".join(json.dumps(x) + "\n" for x in pers))
    return run


def test_flat_runs_are_compared_by_algorithm_schedule_and_seed(tmp_path: Path) -> None:
    runs = [flat_run(tmp_path, "avg0", loss=4.0),
            flat_run(tmp_path, "avg1", seed=1, loss=4.2),
            flat_run(tmp_path, "sgd", algorithm="fedsgd", loss=5.0, steps=1),
            flat_run(tmp_path, "cos", schedule="warmup_cosine", loss=3.5)]
    result = compare(runs, tmp_path / "cmp")
    (experiment,) = result["experiments"]
    rows = {r.method: r for r in experiment.rows}
    assert list(rows) == ["fedavg schedule=constant", "fedsgd",
                          "fedavg schedule=warmup_cosine"]
    avg = rows["fedavg schedule=constant"]
    assert len(avg.runs) == 2
    assert avg.ppl["heldout"].low == pytest.approx(math.exp(4.25))  # last eval: round 4
    assert avg.ppl["heldout"].high == pytest.approx(math.exp(4.45))
    assert avg.mean_ppl.low == pytest.approx(math.exp(4.5))  # mean loss over the two sets
    assert avg.tokens.mean == 4000 and avg.steps.mean == 40
    assert rows["fedsgd"].steps.mean == 4
    # pooled over both sets (6 clients): post losses 4.05, 4.15, 4.25, 4.55, 4.65, 4.75
    assert avg.pers_post.low == pytest.approx((4.25 + 4.55) / 2)
    head = result["table"].splitlines()[0]
    assert head == ("| method | runs | heldout | other | mean ppl | pers. loss p50 before | "
                    "after | tokens | client steps |")
    assert result["notes"][0].startswith("compute differs across methods: client steps 4–40")
    assert {p.name for p in result["files"]} >= {"perplexity.png", "loss.png"}


def test_flat_run_after_a_given_round(tmp_path: Path) -> None:
    run = load_run(flat_run(tmp_path, "avg", rounds=6, every=2), at_round=4)
    assert {k: round(v.loss, 6) for k, v in run.last_eval().items()} == {
        "heldout": 4.25, "other": 4.75, "*": 4.5}
    assert (run.tokens, run.steps) == (4000, 40)
    with pytest.raises(RunDirError, match=r"no evaluation after round 3; it evaluated after "
                                          r"rounds \[2, 4, 6\]"):
        load_run(tmp_path / "avg", at_round=3)


def test_flat_and_hierarchical_runs_are_separate_experiments(tmp_path: Path) -> None:
    flat = flat_run(tmp_path, "flat")
    hier = set_config(fake_run(tmp_path, "hier", "fl", ppl=PPL["fl"]))
    result = compare([flat, hier], tmp_path / "cmp", plots=False)
    assert [e.runs[0].kind for e in result["experiments"]] == ["flat", "hierarchical"]
    assert result["experiments"][0].differs["kind"] == "flat"


# --- plots ----------------------------------------------------------------------------------

NINE = [f"world/{fam}/{lang}" for fam, langs in
        (("germanic", "de nl sv"), ("romance", "es fr it"), ("slavic", "cs pl ru"))
        for lang in langs.split()]
METHODS = ["fl", "hierfavg", "fedper", "local", "worldlm"]


def nine_language_runs(root: Path, methods: list[str]) -> list[Path]:
    import test_compare

    old = test_compare.LEAVES
    test_compare.LEAVES = NINE  # fake_run writes one eval row per LEAVES entry
    try:
        return [fake_run(root, m, m, ppl={leaf: 100.0 + 10 * i + j for j, leaf in
                                          enumerate(NINE)})
                for i, m in enumerate(methods)]
    finally:
        test_compare.LEAVES = old


def _png(path: Path) -> Any:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_perplexity_chart_has_a_sensible_size_and_wraps(tmp_path: Path) -> None:
    runs = nine_language_runs(tmp_path / "runs", METHODS)
    compare(runs, tmp_path / "cmp")
    height, width = _png(tmp_path / "cmp" / "perplexity.png").shape[:2]
    assert width <= 1600, (width, height)
    assert 700 <= height <= 1200  # two rows of panels: 9 languages + mean, 5 methods each
    compare(runs[:2], tmp_path / "two")
    height, width = _png(tmp_path / "two" / "perplexity.png").shape[:2]
    assert width <= 1600 and height < 600  # one row


def _has_colour(image: Any, hex_colour: str) -> bool:
    import numpy as np

    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.01).any())


def test_each_method_keeps_its_colour_whatever_the_argument_order(tmp_path: Path) -> None:
    runs = nine_language_runs(tmp_path / "runs", ["fl", "worldlm"])
    for name, order in (("a", runs), ("b", runs[::-1])):
        compare(order, tmp_path / name)
        image = _png(tmp_path / name / "perplexity.png")
        for method in ("fl", "worldlm"):
            assert _has_colour(image, hplots.method_colour(method)), (name, method)
    assert hplots.method_colour("fl") != hplots.method_colour("worldlm")
    assert hplots.method_colour("my-method") == hplots.method_colour("my-method")
    assert len({hplots.method_colour(m) for m in hplots.KNOWN_METHODS}) == \
        len(hplots.KNOWN_METHODS)


def test_loss_plot_uses_rounds_as_recorded(tmp_path: Path, monkeypatch) -> None:
    """Records count rounds completed from 1: the held-out curve is drawn at 1, 2, 3."""
    from matplotlib.figure import Figure

    figures: list[Figure] = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self),
                                                                   save(self, *a, **k)))
    run = load_run(fake_run(tmp_path, "w", "worldlm", ppl=PPL["worldlm"], rounds=3,
                            planned=3))
    assert [x for x, _ in hplots.eval_curve(run)] == [1, 2, 3]
    compare([run.path], tmp_path / "cmp")
    loss = next(f for f in figures if len(f.axes) == 2)
    right = loss.axes[1]
    assert right.get_xlabel() == "round (rounds completed)"
    assert list(right.lines[0].get_xdata()) == [1, 2, 3]
