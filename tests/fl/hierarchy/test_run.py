"""``fedgroups train`` on a config with a ``hierarchy:`` section, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from fedgroups.fl import cli
from fedgroups.fl.config import parse_config
from fedgroups.fl.hierarchy import records
from fedgroups.fl.hierarchy.config import METHODS
from fedgroups.fl.hierarchy.runner import run


def test_cli_trains_a_tree_writes_the_records_and_resumes(
        world_data: str, tmp_path: Path, world_config_factory: Any,
        capsys: pytest.CaptureFixture) -> None:
    cfg = world_config_factory(world_data, tmp_path / "run", rounds=2,
                               **{"eval.every": 1, "run.checkpoint_every": 2})
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "method worldlm: 2 root rounds" in out and "world/romance/es" in out

    d = tmp_path / "run"
    for name in ("config.yaml", "tokenizer.json", "tree.json", "metrics.jsonl", "metrics.csv",
                 "eval.jsonl", "attention.jsonl", "summary.json", "plots/loss.png",
                 "checkpoints/round_000002.pt"):
        assert (d / name).is_file(), name
    assert records.is_hierarchical_run(d)
    tree = records.read_tree(d)
    assert [(n.path, n.kind) for n in tree] == [
        ("world", "root"), ("world/germanic", "federation"), ("world/germanic/de", "leaf"),
        ("world/germanic/nl", "leaf"), ("world/romance", "federation"),
        ("world/romance/es", "leaf"), ("world/romance/it", "leaf")]
    assert sum(n.train_clients + n.eval_clients for n in tree if n.kind == "leaf") == 16
    metrics = records.read_metrics(d)
    assert len(metrics) == 2 * 7 and {m.method for m in metrics} == {"worldlm"}
    root_rows = [m for m in metrics if m.kind == "root"]
    assert [m.cum_tokens for m in root_rows] == [root_rows[0].tokens,
                                                 root_rows[0].tokens + root_rows[1].tokens]
    for r in (1, 2):  # rounds done; a parent's counters are the sum of its children's
        rows = {m.node: m for m in metrics if m.round == r}
        assert rows["world"].steps == rows["world/germanic"].steps + rows["world/romance"].steps
        assert rows["world/romance"].clients == \
               rows["world/romance/es"].clients + rows["world/romance/it"].clients
    evals = records.read_eval(d)
    assert len(evals) == 2 * 5 and evals[-1].federation == records.MEAN_FEDERATION
    assert evals[-1].pers_post_p50 is not None and evals[0].pers_post_p50 is None
    attention = records.read_attention(d)
    assert {a.level for a in attention} == {0, 1}
    summary = records.read_summary(d)
    assert summary.rounds == 2 and summary.key_parameters > 0
    assert summary.eval_loss == pytest.approx(evals[-1].loss)
    saved = parse_config(yaml.safe_load((d / "config.yaml").read_text()))
    assert saved.hierarchy["method"] == "worldlm" and saved.hierarchy["residuals"] == 1

    assert cli.main(["train", "--resume", str(d), "--set", "rounds=3"]) == 0
    assert "3 root rounds" in capsys.readouterr().out
    assert len(records.read_metrics(d)) == 3 * 7


def test_every_method_makes_the_same_client_updates_and_steps(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    summaries = {}
    for method in METHODS:
        cfg = world_config_factory(world_data, tmp_path / method, rounds=1, **{
            "personalization.enabled": False, "hierarchy.method": method})
        summaries[method] = run(parse_config(cfg), echo=lambda m: None).summary
    updates = {m: (s.client_updates, s.steps) for m, s in summaries.items()}
    assert len(set(updates.values())) == 1, updates  # 4 leaves x cohort 2 x 2 local steps
    assert updates["fl"] == (8, 16)
    assert summaries["fl"].key_parameters == summaries["hierfavg"].key_parameters == 0
    assert summaries["local"].key_parameters == summaries["local"].parameters
    evaluated = {m: sorted(s.federations) for m, s in summaries.items()}
    assert len({tuple(v) for v in evaluated.values()}) == 1  # the same held-out groups


@pytest.mark.parametrize("setting, message", [
    ("hierarchy.levels=[family,script]", "script"),
    ("hierarchy.key_params=[blocks.9.*]", "'blocks.9.*' matches no parameter"),
    ("hierarchy.node_settings={fr: {rounds: 2}}", "no node named ['fr']"),
    ("hierarchy.tau=0", "hierarchy.tau must be > 0"),
])
def test_bad_trees_exit_2_naming_the_setting(
        setting: str, message: str, world_data: str, tmp_path: Path,
        world_config_factory: Any, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(world_config_factory(world_data, tmp_path / "run")))
    assert cli.main(["train", str(path), "--set", setting, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_an_explicit_tree_over_two_datasets(world_data: str, tmp_path: Path,
                                            world_config_factory: Any,
                                            make_world_records: Any) -> None:
    from fedgroups.engine.api import build

    other = tmp_path / "other"
    rows = [dict(r, doc="b-" + r["doc"]) for r in make_world_records(2, seed=1)
            if r["lang"] == "nl"]
    build(rows, "field:doc", str(other), progress=False)
    cfg = world_config_factory(world_data, tmp_path / "run", rounds=1,
                               **{"personalization.enabled": False})
    cfg["hierarchy"] = {"method": "worldlm", "eval_fraction": 0.5, "nodes": [
        {"name": "w", "children": ["rom", "far"]},
        {"name": "rom", "children": ["es", "it"]},
        {"name": "es", "keys": ["es-*"]}, {"name": "it", "keys": ["it-0[01]"]},
        {"name": "far", "children": ["nl"]},
        {"name": "nl", "keys": ["*"], "dataset": str(other), "cohort_size": 1}]}
    result = run(parse_config(cfg), echo=lambda m: None)
    tree = {n.path: n for n in records.read_tree(tmp_path / "run")}
    assert (tree["w/rom/es"].train_clients, tree["w/rom/es"].eval_clients) == (2, 2)
    assert (tree["w/rom/it"].train_clients, tree["w/rom/it"].eval_clients) == (1, 1)
    assert (tree["w/far/nl"].train_clients, tree["w/far/nl"].eval_clients) == (1, 1)
    rows = {m.node: m for m in records.read_metrics(tmp_path / "run")}
    assert rows["w/far/nl"].clients == 1 and rows["w"].clients == 2 + 1 + 1
    assert {e.federation for e in result.evals} == {"w/rom/es", "w/rom/it", "w/far/nl", "*"}
    es, nl = result.eval_params("w/rom/es"), result.eval_params("w/far/nl")
    assert es.keys() == nl.keys() == set(result.root.server.params) | set(result.root.shared.key_names)
    assert torch.equal(es["tok_emb.weight"], nl["tok_emb.weight"])  # one backbone
    assert not torch.equal(es["blocks.1.mlp.fc.weight"], nl["blocks.1.mlp.fc.weight"])


def test_a_transformers_gpt2_with_its_last_block_as_key_layers(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    transformers = pytest.importorskip("transformers")

    def tiny_gpt2(*, vocab_size: int, seq_len: int) -> Any:
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=vocab_size, n_positions=seq_len, n_embd=32, n_layer=2, n_head=2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))

    cfg = world_config_factory(world_data, tmp_path / "run", rounds=1,
                               **{"personalization.enabled": False})
    result = run(parse_config(cfg), echo=lambda m: None, model_factory=tiny_gpt2)
    model = tiny_gpt2(vocab_size=300, seq_len=16)
    block = sum(p.numel() for n, p in model.named_parameters() if n.startswith("transformer.h.1."))
    assert result.summary.key_parameters == block
    assert {a.node for a in records.read_attention(tmp_path / "run")} == {
        "world", "world/germanic", "world/romance"}
    assert result.summary.eval_loss is not None
