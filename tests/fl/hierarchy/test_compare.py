"""fedgroups compare on small run directories written with the records writers, and
(slow) on real tiny runs of the trainer."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from fedgroups.cli import main
from fedgroups.fl.hierarchy import records as rec
from fedgroups.fl.hierarchy.compare import RunDirError, compare, load_run
from fedgroups.fl.hierarchy.plots import attention_trace

LEAVES = ["world/romance/es", "world/romance/fr", "world/slavic/ru"]


def fake_run(root: Path, name: str, method: str, *, ppl: dict[str, float], seed: int = 0,
             rounds: int = 2, planned: int = 2, steps: int = 400, tokens: int = 50_000,
             epsilon: float | None = None, attention: bool = False) -> Path:
    """A run directory as the runner writes it: config, tree, metrics, eval, summary.
    Rounds as recorded: rounds completed, from 1."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"rounds: {planned}\nseed: {seed}\nhierarchy: {{method: {method}}}\n")
    nodes = [rec.TreeNodeRecord(path="world", name="world", level=0, kind="root", parent=None,
                                children=["world/romance", "world/slavic"], train_clients=30,
                                eval_clients=6, settings={"rounds": planned})]
    for fam in ("romance", "slavic"):
        kids = [leaf for leaf in LEAVES if leaf.startswith(f"world/{fam}/")]
        nodes.append(rec.TreeNodeRecord(path=f"world/{fam}", name=fam, level=1,
                                        kind="federation", parent="world", children=kids,
                                        train_clients=10 * len(kids), eval_clients=2,
                                        settings={}))
        nodes += [rec.TreeNodeRecord(path=leaf, name=leaf.rsplit("/", 1)[-1], level=2,
                                     kind="leaf", parent=f"world/{fam}", children=[],
                                     train_clients=10, eval_clients=2, settings={})
                  for leaf in kids]
    rec.write_json(run / rec.TREE_FILE, {"version": rec.RECORDS_VERSION, "method": method,
                                         "nodes": [rec.to_json(n) for n in nodes]})
    metrics, evals, attn = [], [], []
    for r in range(rounds):
        metrics.append(rec.NodeRoundRecord(
            method=method, round=r + 1, node="world", level=0, kind="root", inner_rounds=1,
            train_loss=5.0 - r, clients=8, skipped=0, tokens=tokens // rounds, examples=100,
            steps=steps // rounds, cum_tokens=tokens * (r + 1) // rounds,
            cum_steps=steps * (r + 1) // rounds, server_lr=1.0, dp_epsilon=epsilon,
            dp_delta=1e-5 if epsilon else None, seconds=1.0, tokens_per_s=1000.0))
        scale = 1.0 + (rounds - 1 - r) * 0.5  # perplexity falls to ``ppl`` at the last round
        for leaf in LEAVES:
            p = ppl[leaf] * scale
            evals.append(rec.EvalRecord(method=method, round=r + 1, federation=leaf, level=2,
                                        loss=math.log(p), ppl=p, tokens=1000, clients=2,
                                        dp_epsilon=epsilon if leaf.endswith("ru") else None))
        mean = sum(math.log(ppl[leaf] * scale) for leaf in LEAVES) / len(LEAVES)
        evals.append(rec.EvalRecord(method=method, round=r + 1, federation=rec.MEAN_FEDERATION,
                                    level=-1, loss=mean, ppl=math.exp(mean), tokens=3000,
                                    clients=6))
        if attention:
            self_w = 0.5 + 0.2 * r
            attn.append(rec.AttentionRecord(
                method=method, round=r + 1, node_round=0, node="world/romance", level=1,
                rows=["world/romance/es", "world/romance/fr"],
                columns=["world/romance/es", "world/romance/fr", "world/slavic/ru"],
                residual=[False, False, True],
                matrix=[[self_w, 0.9 - self_w, 0.1], [0.9 - self_w, self_w, 0.1]], tau=0.1))
            attn.append(rec.AttentionRecord(
                method=method, round=r + 1, node_round=0, node="world", level=0,
                rows=["world/romance", "world/slavic"],
                columns=["world/romance", "world/slavic"], residual=[False, False],
                matrix=[[0.7, 0.3], [0.4, 0.6]], tau=0.1))
    rec.append_jsonl(run / rec.METRICS_FILE, metrics)
    rec.append_jsonl(run / rec.EVAL_FILE, evals)
    if attn:
        rec.append_jsonl(run / rec.ATTENTION_FILE, attn)
    last = {leaf: {"loss": math.log(ppl[leaf]), "ppl": ppl[leaf], "tokens": 1000,
                   "dp_epsilon": None} for leaf in LEAVES}
    summary = rec.RunSummary(method=method, rounds=rounds, client_updates=16, steps=steps,
                             tokens=tokens, seconds=2.0, tokens_per_s=25_000.0,
                             eval_loss=evals[-1].loss, eval_ppl=evals[-1].ppl,
                             federations=last, parameters=1000,
                             key_parameters=0 if method == "fl" else 200)
    rec.write_json(run / rec.SUMMARY_FILE, rec.to_json(summary))
    return run


PPL = {"fl": {"world/romance/es": 40.0, "world/romance/fr": 44.0, "world/slavic/ru": 60.0},
       "worldlm": {"world/romance/es": 30.0, "world/romance/fr": 33.0, "world/slavic/ru": 41.0}}


def test_table_has_one_row_per_method_with_seed_ranges(tmp_path: Path) -> None:
    fl = fake_run(tmp_path, "fl", "fl", ppl=PPL["fl"])
    w0 = fake_run(tmp_path, "w0", "worldlm", ppl=PPL["worldlm"], attention=True)
    w1 = fake_run(tmp_path, "w1", "worldlm", seed=1, attention=True,
                  ppl={k: v + 2 for k, v in PPL["worldlm"].items()})
    result = compare([fl, w0, w1], tmp_path / "cmp")
    lines = result["table"].splitlines()
    assert lines[0] == ("| method | runs | es | fr | ru | mean ppl | tokens | client steps |")
    fl_row = lines[2].split(" | ")
    assert fl_row[:5] == ["| fl", "1", "40.00", "44.00", "60.00"]
    mean_fl = math.exp(sum(math.log(v) for v in PPL["fl"].values()) / 3)
    assert fl_row[5] == f"{mean_fl:.2f}"
    w_row = lines[3].split(" | ")
    assert w_row[:3] == ["| worldlm", "2", "31.00 [30.00–32.00]"]  # mean [min–max] over seeds
    assert w_row[6:8] == ["50,000", "400 |"]
    assert result["notes"][0].startswith("equal compute: 400 client steps")
    with (tmp_path / "cmp" / "compare.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == ["fl", "worldlm"]
    assert float(table[1]["world/slavic/ru"]) == pytest.approx(42.0)
    assert float(table[1]["world/slavic/ru_min"]) == 41.0
    assert float(table[1]["world/slavic/ru_max"]) == 43.0
    assert (tmp_path / "cmp" / "compare.md").read_text().startswith(lines[0])
    names = sorted(p.name for p in result["files"])
    assert names == ["attention-worldlm-level0.png", "attention-worldlm-level1.png",
                     "compare.csv", "compare.md", "loss.png", "perplexity.png"]
    for p in result["files"]:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000


def test_epsilon_column_and_unequal_compute_are_reported(tmp_path: Path) -> None:
    a = fake_run(tmp_path, "a", "fedper", ppl=PPL["fl"], epsilon=2.5)
    b = fake_run(tmp_path, "b", "local", ppl=PPL["fl"], steps=300)
    result = compare([a, b], tmp_path / "cmp", plots=False)
    lines = result["table"].splitlines()
    assert lines[0].endswith("| client steps | ε |")
    assert lines[2].endswith("| 2.50 |") and lines[3].endswith("| – |")
    assert result["notes"][0].startswith("compute differs across methods: client steps 300–400")


def test_the_last_evaluation_is_the_one_reported(tmp_path: Path) -> None:
    run = load_run(fake_run(tmp_path, "r", "hierfavg", ppl=PPL["fl"], rounds=3, planned=3))
    assert {k: v.ppl for k, v in run.last_eval().items() if k != "*"} == PPL["fl"]


def test_compare_after_a_given_round(tmp_path: Path) -> None:
    """--round N: the evaluation after round N, tokens and steps up to it; a run that goes
    on past N (unfinished) is fine, one that has not reached N, or not evaluated, is not."""
    done = fake_run(tmp_path, "done", "fl", ppl=PPL["fl"], rounds=3, planned=3)
    going = fake_run(tmp_path, "going", "worldlm", ppl=PPL["worldlm"], rounds=3, planned=3)
    config = going / "config.yaml"
    config.write_text(config.read_text().replace("rounds: 3", "rounds: 9"))  # goes on
    result = compare([done, going], tmp_path / "cmp", at_round=2, plots=False)
    fl, w = result["rows"]
    assert fl.ppl["world/slavic/ru"].mean == pytest.approx(60.0 * 1.5)  # round 2 of 3
    assert w.ppl["world/slavic/ru"].mean == pytest.approx(41.0 * 1.5)
    assert fl.tokens.mean == 50_000 * 2 // 3 and fl.steps.mean == 400 * 2 // 3
    assert result["notes"][0].startswith("compared after round 2")
    with pytest.raises(RunDirError, match="fewer than --round 4"):
        load_run(done, at_round=4)
    with pytest.raises(RunDirError, match="unfinished"):
        load_run(going)
    lines = [ln for ln in (done / rec.EVAL_FILE).read_text().splitlines()
             if '"round": 2,' not in ln]
    (done / rec.EVAL_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match=r"no evaluation after round 2; it evaluated after "
                                          r"rounds \[1, 3\]"):
        load_run(done, at_round=2)


def test_attention_trace_follows_self_weight_and_residual_mass(tmp_path: Path) -> None:
    run = load_run(fake_run(tmp_path, "w", "worldlm", ppl=PPL["worldlm"], attention=True))
    trace = attention_trace(run.attention)
    assert [p[0] for p in trace["world/romance"]] == [1.0, 2.0]  # rounds completed
    assert [round(p[1], 6) for p in trace["world/romance"]] == [0.5, 0.7]
    assert [round(p[2], 6) for p in trace["world/romance"]] == [0.1, 0.1]
    assert [round(p[2], 6) for p in trace["world"]] == [0.0, 0.0]


def test_bad_run_directories_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no such run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="not a directory"):
        load_run(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        load_run(tmp_path / "empty")
    half = fake_run(tmp_path, "half", "worldlm", ppl=PPL["worldlm"], rounds=1, planned=4)
    with pytest.raises(RunDirError, match="unfinished, 1 of 4 rounds done.*--partial"):
        load_run(half)
    assert not load_run(half, partial=True).finished
    (half / rec.EVAL_FILE).write_text("")
    with pytest.raises(RunDirError, match="no evaluation"):
        load_run(half, partial=True)
    (half / rec.SUMMARY_FILE).unlink()
    with pytest.raises(RunDirError, match="has not finished a round"):
        load_run(half)


def test_cli_prints_the_table_and_fails_cleanly(tmp_path: Path, capsys) -> None:
    run = fake_run(tmp_path, "fl", "fl", ppl=PPL["fl"])
    assert main(["compare", str(run), "--out", str(tmp_path / "c"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| method | runs | es | fr | ru |") and "compare.csv" in out
    assert main(["compare", str(run), str(tmp_path / "nope"), "--out",
                 str(tmp_path / "c")]) == 2
    assert "nope: no such run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_real_tiny_runs_of_two_methods(tmp_path: Path) -> None:
    """The runner's own outputs for fl and worldlm on two languages of Django's catalogs."""
    pytest.importorskip("django")
    import fedgroups as fg
    from fedgroups.fl.config import parse_config
    from fedgroups.fl.hierarchy.runner import run

    data = fg.recipes.django_l10n(tmp_path / "world", languages="fr,de", progress=False).path
    runs = []
    for method in ("fl", "worldlm"):
        config = parse_config({
            "data": {"path": data}, "output_dir": str(tmp_path / method), "rounds": 2,
            "cohort_size": 4, "seed": 0,
            "tokenizer": {"vocab_size": 300, "sample_groups": 50, "sample_examples": 500},
            "model": {"preset": "tiny", "seq_len": 16},
            "client": {"optimizer": "adam", "lr": 3e-3, "local_steps": 2, "batch_size": 4,
                       "max_sequences": 8},
            "eval": {"max_sequences": 4, "batch_size": 4},
            "personalization": {"enabled": False},
            "run": {"threads": 1, "progress": False},
            "hierarchy": {"method": method, "levels": ["family", "lang"],
                          "eval_max_clients": 2}})
        run(config, echo=lambda m: None)
        runs.append(tmp_path / method)
    result = compare(runs, tmp_path / "cmp")
    head = result["table"].splitlines()[0]
    assert head.startswith("| method | runs | de | fr | mean ppl |") or \
        head.startswith("| method | runs | fr | de | mean ppl |")
    rows = {r.method: r for r in result["rows"]}
    assert set(rows) == {"fl", "worldlm"}
    for row in rows.values():
        assert row.mean_ppl is not None and row.mean_ppl.mean > 1
        assert row.steps is not None and row.steps.mean > 0
    names = {p.name for p in result["files"]}
    assert {"perplexity.png", "loss.png"} <= names
    assert any(n.startswith("attention-worldlm-level") for n in names)
    assert not any(n.startswith("attention-fl") for n in names)
