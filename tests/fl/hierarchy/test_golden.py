"""Golden checks: the hierarchy reduces to known algorithms where it should, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fedgroups.fl.checkpoint import latest_checkpoint, load_checkpoint
from fedgroups.fl.config import parse_config
from fedgroups.fl.hierarchy import records
from fedgroups.fl.hierarchy.runner import HierarchyResult, run
from fedgroups.fl.simulation import run as run_flat

QUIET: dict[str, Any] = {"personalization.enabled": False}


def _run(cfg: dict[str, Any]) -> HierarchyResult:
    return run(parse_config(cfg), echo=lambda m: None)


def _params(result: HierarchyResult, internal_keys: bool = True
            ) -> dict[str, dict[str, torch.Tensor]]:
    """Every node's server parameters and own key layers, by node path.

    ``internal_keys=False`` leaves out the K of federations of federations (bookkeeping
    that methods without mixing never update; the model is B + the leaves' K).
    """
    out = {}
    for n in result.root.walk():
        p = {f"server:{k}": v for k, v in (n.server.snapshot() if n.server else {}).items()}
        if n.is_leaf or internal_keys:
            p.update({f"keys:{k}": v for k, v in n.own_keys().items()})
        out[n.path] = p
    return out


def _assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for path in a:
        assert a[path].keys() == b[path].keys(), path
        for k in a[path]:
            assert torch.equal(a[path][k], b[path][k]), (path, k)


def _differ(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[p][k], b[p][k]) for p in a for k in a[p])


def test_one_federation_tree_without_key_layers_is_flat_fedavg_bit_for_bit(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    over = {**QUIET, "rounds": 3, "cohort_size": 5,
            "server": {"optimizer": "momentum", "lr": 0.7,
                       "schedule": {"name": "warmup_cosine", "warmup_rounds": 1}},
            "client.optimizer": "adam", "client.lr": 0.01}
    cfg = world_config_factory(world_data, tmp_path / "tree", **over)
    cfg["hierarchy"] = {"method": "hierfavg", "nodes": [{"name": "all", "keys": ["*"]}],
                        "eval_fraction": 0.0}
    tree = _run(cfg)
    flat_cfg = world_config_factory(world_data, tmp_path / "flat", **over)
    del flat_cfg["hierarchy"]
    flat = run_flat(parse_config(flat_cfg), echo=lambda m: None)

    ours = tree.root.server.snapshot()
    for name, p in flat.model.named_parameters():
        assert torch.equal(ours[name], p), name
    flat_losses = [r["train_loss"] for r in flat.rows]
    assert [r["train_loss"] for r in tree.rows] == flat_losses


def test_fedper_with_one_client_per_leaf_is_local_training_of_the_key_layers(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    """Each leaf's K equals a flat run's per-client local parameters (algorithm.local_params)."""
    import fedgroups as fg

    keys = sorted(fg.open(world_data).keys())[::3]  # 6 documents, one per leaf
    over = {**QUIET, "rounds": 3, "cohort_size": len(keys), "client.shuffle": False}
    cfg = world_config_factory(world_data, tmp_path / "tree", **over)
    cfg["hierarchy"] = {"method": "fedper", "eval_fraction": 0.0, "nodes": [
        {"name": "w", "children": [f"c{i}" for i in range(len(keys))]},
        *({"name": f"c{i}", "keys": [k]} for i, k in enumerate(keys))]}
    tree = _run(cfg)
    flat_cfg = world_config_factory(world_data, tmp_path / "flat", **over)
    del flat_cfg["hierarchy"]
    flat_cfg["data"]["keys"] = keys
    flat_cfg["algorithm"] = {"local_params": ["blocks.1.*"]}
    run_flat(parse_config(flat_cfg), echo=lambda m: None)
    state = load_checkpoint(latest_checkpoint(tmp_path / "flat"))

    for name, p in state["server"]["params"].items():
        assert torch.allclose(tree.root.server.params[name], p, atol=1e-6), name
    leaves = {n.path: n for n in tree.root.walk() if n.is_leaf}
    for i, key in enumerate(keys):
        local = state["local_store"][key]
        ours = leaves[f"w/c{i}"].own_keys()
        assert ours.keys() == local.keys()
        for name in local:
            assert torch.allclose(ours[name], local[name], atol=1e-6), (key, name)
            assert not torch.equal(ours[name], tree.root.server.params.get(name, ours[name] + 1))


def test_tau_to_zero_is_fedper_and_tau_to_infinity_is_the_mean_ablation(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    def go(name: str, **hier: Any) -> dict:
        cfg = world_config_factory(world_data, tmp_path / name, **QUIET, rounds=2)
        cfg["hierarchy"].update(hier)
        return _params(_run(cfg), internal_keys=False)

    fedper = go("fedper", method="fedper")
    _assert_equal(go("tau0", method="worldlm-noresidual", tau=1e-9), fedper)
    mean = go("mean", method="worldlm-mean", residuals=0)
    inf = go("inf", method="worldlm-noresidual", tau=1e12)
    assert _differ(mean, fedper)  # the mixing does something here
    for path in mean:
        for k in mean[path]:
            assert torch.allclose(inf[path][k], mean[path][k], atol=1e-6), (path, k)


def test_residuals_with_one_sub_federation_change_nothing(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    def go(name: str, method: str, nodes: list[dict]) -> dict:
        cfg = world_config_factory(world_data, tmp_path / name, **QUIET, rounds=3)
        cfg["hierarchy"] = {"method": method, "tau": 0.01, "nodes": nodes}
        return _params(_run(cfg))

    one = [{"name": "w", "children": ["rom"]}, {"name": "rom", "children": ["es", "it"]},
           {"name": "es", "keys": ["es-*"]}, {"name": "it", "keys": ["it-*"]}]
    _assert_equal(go("one-res", "worldlm", one), go("one-nores", "worldlm-noresidual", one))
    two = [{"name": "w", "children": ["rom", "ger"]}, *one[1:],
           {"name": "ger", "children": ["de", "nl"]},
           {"name": "de", "keys": ["de-*"]}, {"name": "nl", "keys": ["nl-*"]}]
    assert _differ(go("two-res", "worldlm", two), go("two-nores", "worldlm-noresidual", two))
    attn = records.read_attention(tmp_path / "two-res")
    routed = [a for a in attn if any(a.residual)]
    assert routed and all(a.level == 1 for a in routed)
    for a in routed:  # the routed keys come from the other family
        family = a.node.split("/")[1]
        assert all(c.split("/")[1] != family for c, r in zip(a.columns, a.residual) if r)


def test_dp_with_sigma_zero_and_infinite_clip_is_no_dp(
        world_data: str, tmp_path: Path, world_config_factory: Any) -> None:
    def go(name: str, privacy: dict | None) -> dict:
        cfg = world_config_factory(world_data, tmp_path / name, **QUIET, rounds=2)
        es: dict[str, Any] = {"weighting": "uniform"}
        if privacy:
            es["privacy"] = privacy
        cfg["hierarchy"]["node_settings"] = {"es": es}
        return _params(_run(cfg))

    plain = go("plain", None)
    _assert_equal(go("dp0", {"clip_norm": float("inf"), "noise_multiplier": 0.0}), plain)
    assert _differ(go("dp", {"clip_norm": 0.5, "noise_multiplier": 0.1}), plain)


@pytest.mark.parametrize("method", [
    "worldlm", "fl", "hierfavg", "local",
    pytest.param("fedper", marks=pytest.mark.slow),
    pytest.param("worldlm-noresidual", marks=pytest.mark.slow),
    pytest.param("worldlm-mean", marks=pytest.mark.slow),
])
def test_resume_is_exact(method: str, world_data: str, tmp_path: Path,
                         world_config_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    over = {"rounds": 3, "run.checkpoint_every": 2, "eval.every": 1,
            "personalization.enabled": method == "worldlm",
            "server": {"optimizer": "adam", "lr": 0.01},
            "hierarchy.method": method, "hierarchy.level_settings": [
                {}, {"server": {"optimizer": "momentum", "lr": 0.5}}, {"rounds": 2}],
            "hierarchy.node_settings": {"it": {"privacy": {"clip_norm": 0.5,
                                                           "noise_multiplier": 0.3}}}}
    full = _run(world_config_factory(world_data, tmp_path / "full", **over))

    from fedgroups.fl.hierarchy.node import FedNode

    original = FedNode.run_round

    def crash(self: FedNode) -> dict:
        if self.level == 0 and self.shared.root_round == 3:  # the third round, after the checkpoint of round 2
            raise KeyboardInterrupt
        return original(self)

    cfg = parse_config(world_config_factory(world_data, tmp_path / "cut", **over))
    monkeypatch.setattr(FedNode, "run_round", crash)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, echo=lambda m: None)
    monkeypatch.setattr(FedNode, "run_round", original)
    resumed = run(cfg, resume=True, echo=lambda m: None)

    _assert_equal(_params(resumed), _params(full))
    timing = ("seconds", "tokens_per_s")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in full.rows]
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed.rows] == strip
    assert [records.to_json(e) for e in resumed.evals] == \
           [records.to_json(e) for e in records.read_eval(tmp_path / "full")]
    assert (tmp_path / "cut" / records.ATTENTION_FILE).read_text() == \
           (tmp_path / "full" / records.ATTENTION_FILE).read_text()


@pytest.mark.parametrize("method", ["worldlm", pytest.param("fl", marks=pytest.mark.slow)])
def test_client_threads_give_the_same_tree_bit_for_bit(method: str, world_data: str,
                                                       tmp_path: Path,
                                                       world_config_factory: Any) -> None:
    """run.client_threads trains a leaf's clients at once; aggregation stays in cohort order,
    so every node's parameters and every logged number are those of one thread (with DP
    noise on a leaf and clients too small to train)."""
    over = {**QUIET, "rounds": 3, "cohort_size": 3, "client.min_sequences": 3,
            "hierarchy.method": method,
            "hierarchy.node_settings": {"it": {"privacy": {"clip_norm": 0.5,
                                                           "noise_multiplier": 0.3}}}}
    one = _run(world_config_factory(world_data, tmp_path / "one", **over))
    two = _run(world_config_factory(world_data, tmp_path / "two", **over,
                                    **{"run.client_threads": 2}))
    _assert_equal(_params(two), _params(one))
    timing = ("seconds", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in two.rows] == \
           [{k: v for k, v in r.items() if k not in timing} for r in one.rows]
