"""The tree: from group columns and from explicit nodes; every bad input names what is wrong."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fedgroups.errors import FedGroupsError
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.hierarchy.config import (
    HierarchyConfig,
    HierarchyError,
    NodeSettings,
    NodeSpec,
    parse_hierarchy,
    resolve_settings,
)
from fedgroups.fl.hierarchy.tree import (
    check_overrides,
    default_key_globs,
    key_param_names,
    split_eval,
    tree_from_nodes,
    tree_from_table,
)

TABLE = pa.table({
    "key": ["d1", "d2", "d3", "d4", "d5"],
    "family": ["romance", "romance", "germanic", "romance", "germanic"],
    "lang": ["es", "it", "de", "es", "nl"],
})


def test_tree_from_table_nests_levels_and_keeps_every_group_once() -> None:
    root = tree_from_table(TABLE, ["family", "lang"], root="world", dataset="ds")
    assert [(n.path, n.level, n.is_leaf) for n in root.walk()] == [
        ("world", 0, False), ("world/germanic", 1, False), ("world/germanic/de", 2, True),
        ("world/germanic/nl", 2, True), ("world/romance", 1, False),
        ("world/romance/es", 2, True), ("world/romance/it", 2, True)]
    assert {n.name: n.keys for n in root.leaves()} == {
        "de": ("d3",), "nl": ("d5",), "es": ("d1", "d4"), "it": ("d2",)}
    one_level = tree_from_table(TABLE, ["lang"], root="w", dataset="ds")
    assert [n.path for n in one_level.leaves()] == ["w/de", "w/es", "w/it", "w/nl"]


def test_tree_from_a_real_dataset_reads_the_group_index(world_data: str) -> None:
    import fedgroups as fg

    ds = fg.open(world_data)
    root = tree_from_table(ds.group_table(["family", "lang"]), ["family", "lang"],
                           root="world", dataset=world_data)
    assert [n.name for n in root.leaves()] == ["de", "nl", "es", "it"]
    assert sum(len(n.keys) for n in root.leaves()) == len(ds.keys()) == 16


@pytest.mark.parametrize("table, levels, match", [
    (TABLE, ["family", "script"], r"'script'.*--group-columns family,script"),
    (TABLE.slice(0, 0), ["family"], "empty federation"),
    (pa.table({"key": ["a"], "lang": [None]}), ["lang"], "group 'a' has no value in column 'lang'"),
    (pa.table({"key": ["a"], "lang": ["x/y"]}), ["lang"], "without '/'"),
])
def test_tree_from_table_errors(table: pa.Table, levels: list[str], match: str) -> None:
    with pytest.raises(HierarchyError, match=match) as e:
        tree_from_table(table, levels, root="world", dataset="ds")
    assert isinstance(e.value, FedGroupsError)


KEYS = {"main": ["es-1", "es-2", "fr-1", "ru-1"], "other": ["x-1"]}


def _nodes(*specs: dict) -> list[NodeSpec]:
    return [NodeSpec(**s) for s in specs]


def test_explicit_tree_over_two_datasets_with_inline_settings() -> None:
    specs = _nodes({"name": "w", "children": ["rom", "ru"]},
                   {"name": "rom", "children": ["es", "fr"], "rounds": 2},
                   {"name": "es", "keys": ["es-*"]}, {"name": "fr", "keys": ["fr-*"]},
                   {"name": "ru", "keys": ["*"], "dataset": "other"})
    root = tree_from_nodes(specs, KEYS.__getitem__, default_dataset="main")
    assert [(n.path, n.dataset, n.keys) for n in root.leaves()] == [
        ("w/rom/es", "main", ("es-1", "es-2")), ("w/rom/fr", "main", ("fr-1",)),
        ("w/ru", "other", ("x-1",))]
    assert root.children[0].inline.rounds == 2


@pytest.mark.parametrize("specs, match", [
    ([{"name": "w", "children": ["a"]}, {"name": "a", "keys": ["es-*"]},
      {"name": "a", "keys": ["fr-*"]}], "duplicate node name 'a'"),
    ([{"name": "w", "children": ["a"]}, {"name": "a", "children": ["b"]},
      {"name": "b", "children": ["a"]}], "listed as a child twice|cycle"),
    ([{"name": "a", "children": ["b"]}, {"name": "b", "children": ["a"]}], r"cycle a -> b -> a"),
    ([{"name": "w", "children": ["a", "zz"]}, {"name": "a", "keys": ["*"]}], "unknown child 'zz'"),
    ([{"name": "w", "children": ["a"]}, {"name": "a", "keys": ["*"], "children": ["w"]}],
     "not both"),
    ([{"name": "w", "children": ["a"]}, {"name": "a"}], "'a'.*empty federation"),
    ([{"name": "w", "children": ["a"]}, {"name": "a", "keys": ["de-*"]}],
     r"node 'w/a': keys \['de-\*'\] select no group of dataset 'main'"),
    ([{"name": "w", "children": ["a", "b"]}, {"name": "a", "keys": ["es-*"]},
      {"name": "b", "keys": ["es-1"]}], "group 'es-1' of 'main' is selected by two leaf"),
    ([{"name": "w", "keys": ["*"]}, {"name": "v", "keys": ["x"]}], "exactly one root"),
    ([{"name": "w/x", "keys": ["*"]}], "without '/'"),
])
def test_explicit_tree_errors(specs: list[dict], match: str) -> None:
    with pytest.raises(HierarchyError, match=match):
        tree_from_nodes(_nodes(*specs), KEYS.__getitem__, default_dataset="main")


def test_settings_layers_and_their_errors() -> None:
    cfg = parse_config({"data": {"path": "x"}, "output_dir": "o", "rounds": 5, "cohort_size": 3,
                        "server": {"optimizer": "adam", "lr": 0.01}})
    hier = parse_hierarchy({
        "levels": ["family", "lang"],
        "level_settings": [{}, {"rounds": 2}, {"cohort_size": 8}],
        "node_settings": {"es": {"privacy": {"clip_norm": 1.0, "noise_multiplier": 0.5}},
                          "world/romance": {"server": {"optimizer": "momentum", "lr": 0.5}}},
    })

    def resolve(path: str, level: int, leaf: bool, inline: NodeSettings | None = None) -> object:
        return resolve_settings(name=path.rsplit("/", 1)[-1], path=path, level=level,
                                is_leaf=leaf, inline=inline, hierarchy=hier, config=cfg)

    root = resolve("world", 0, False)
    assert (root.rounds, root.server.optimizer, root.server.lr) == (5, "sgd", 1.0)
    fam = resolve("world/romance", 1, False)
    assert (fam.rounds, fam.server.optimizer, fam.server.lr) == (2, "momentum", 0.5)
    es = resolve("world/romance/es", 2, True)
    assert (es.rounds, es.cohort_size, es.server.optimizer, es.weighting) == \
           (1, 8, "adam", "uniform")  # privacy makes weighting uniform
    assert es.privacy.noise_multiplier == 0.5
    assert resolve("world/romance/it", 2, True, NodeSettings(weighting="examples")).weighting \
           == "examples"

    bad = parse_hierarchy({"levels": ["lang"], "node_settings": {
        "es": {"privacy": {"clip_norm": 1.0, "noise_multiplier": 0.5}, "weighting": "tokens"}}})
    with pytest.raises(HierarchyError, match="'w/es': privacy needs weighting 'uniform'"):
        resolve_settings(name="es", path="w/es", level=1, is_leaf=True, inline=None,
                         hierarchy=bad, config=cfg)
    with pytest.raises(HierarchyError, match="'w/rom': privacy is client-level"):
        resolve_settings(name="rom", path="w/rom", level=1, is_leaf=False,
                         inline=NodeSettings(privacy=bad.node_settings["es"].privacy),
                         hierarchy=hier, config=cfg)
    for privacy, match in (({"clip_norm": 0.0, "noise_multiplier": 1.0}, "clip_norm must be > 0"),
                           ({"clip_norm": 1.0, "noise_multiplier": -0.1},
                            "noise_multiplier must be >= 0")):
        h = parse_hierarchy({"levels": ["lang"], "node_settings": {"es": {"privacy": privacy}}})
        with pytest.raises(HierarchyError, match=f"node 'w/es': privacy.{match}"):
            resolve_settings(name="es", path="w/es", level=1, is_leaf=True, inline=None,
                             hierarchy=h, config=cfg)
    with pytest.raises(HierarchyError, match="the root runs the top-level 'rounds'"):
        resolve_settings(name="w", path="w", level=0, is_leaf=False,
                         inline=NodeSettings(rounds=2), hierarchy=hier, config=cfg)


@pytest.mark.parametrize("data, match", [
    ({"levels": ["lang"], "tau": 0}, "hierarchy.tau must be > 0"),
    ({"levels": ["lang"], "tau": -1.0}, "hierarchy.tau must be > 0"),
    ({"levels": ["lang"], "node_settings": {"es": {"tau": 0.0}}},
     r"hierarchy.node_settings.es: tau must be > 0"),
    ({"levels": ["lang"], "method": "fedavg"}, "hierarchy.method.*'worldlm'"),
    ({}, "exactly one of 'levels'"),
    ({"levels": ["lang"], "nodes": [{"name": "w", "keys": ["*"]}]}, "exactly one of 'levels'"),
    ({"levels": ["lang"], "colour": 1}, "unknown setting 'hierarchy.colour'"),
])
def test_config_errors_name_the_setting(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        parse_hierarchy(data)
    assert isinstance(e.value, FedGroupsError)


def test_overrides_must_name_existing_nodes() -> None:
    root = tree_from_table(TABLE, ["family", "lang"], root="world", dataset="ds")
    check_overrides(root, HierarchyConfig(levels=("family", "lang"),
                                          node_settings={"es": NodeSettings(rounds=2)}))
    with pytest.raises(HierarchyError, match=r"no node named \['fr'\]"):
        check_overrides(root, HierarchyConfig(levels=("x",),
                                              node_settings={"fr": NodeSettings(rounds=2)}))
    with pytest.raises(HierarchyError, match="has 4 entries; the tree has levels 0..2"):
        check_overrides(root, HierarchyConfig(levels=("x",),
                                              level_settings=(NodeSettings(),) * 4))


def test_split_eval_is_seeded_and_never_empties_a_leaf() -> None:
    keys = [f"k{i}" for i in range(10)]
    train, held = split_eval(keys, 0.2, 0, "w/es")
    assert len(held) == 2 and set(train) | set(held) == set(keys) and not set(train) & set(held)
    assert split_eval(keys, 0.2, 0, "w/es") == (train, held)
    assert split_eval(keys, 0.2, 1, "w/es") != (train, held)
    assert split_eval(["a", "b"], 0.9, 0, "w") [1] and len(split_eval(["a", "b"], 0.9, 0, "w")[0]) == 1
    assert split_eval(["a"], 0.5, 0, "w") == (("a",), ())
    assert split_eval(keys, 0.0, 0, "w") == (tuple(keys), ())


def test_key_layers_default_to_the_last_block_and_bad_globs_fail() -> None:
    ours = ["tok_emb.weight", "blocks.0.ln1.weight", "blocks.1.ln1.weight",
            "blocks.1.mlp.fc.weight", "ln_f.weight"]
    assert default_key_globs(ours) == ("blocks.1.*",)
    gpt2 = ["transformer.wte.weight"] + [f"transformer.h.{i}.attn.c_attn.weight" for i in range(12)]
    assert default_key_globs(gpt2) == ("transformer.h.11.*",)
    assert key_param_names(ours, ("blocks.1.*",)) == ["blocks.1.ln1.weight", "blocks.1.mlp.fc.weight"]
    with pytest.raises(HierarchyError, match=r"'blocks.7.\*' matches no parameter"):
        key_param_names(ours, ("blocks.7.*",))
    with pytest.raises(HierarchyError, match="match every parameter"):
        key_param_names(ours, ("*",))
    with pytest.raises(HierarchyError, match="no numbered blocks"):
        default_key_globs(["w", "b"])


def test_the_resolved_section_parses_back_to_the_same_config() -> None:
    from fedgroups.fl.config import to_dict

    for data in ({"levels": ["family", "lang"], "level_settings": [{}, {"rounds": 2}],
                  "node_settings": {"es": {"privacy": {"clip_norm": float("inf"),
                                                       "noise_multiplier": 0.0}}}},
                 {"method": "fedper", "key_params": ["blocks.1.mlp.*"], "nodes": [
                     {"name": "w", "children": ["a"]},
                     {"name": "a", "keys": ["x*"], "dataset": "d", "server": {"lr": 0.5}}]}):
        parsed = parse_hierarchy(data)
        assert parse_hierarchy(to_dict(parsed)) == parsed

