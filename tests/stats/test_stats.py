"""Group statistics: golden numbers on tiny builds, index-only sizes, label heterogeneity,
the CLI and the figure."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import SettingError
from fedgroups.stats import (
    count_matrix,
    format_summary,
    group_table,
    heterogeneity,
    heterogeneity_summary,
    label_counts,
    plot_stats,
    summary,
)
from fedgroups.stats.cli import add_stats_parser, run_stats


@pytest.fixture(scope="module")
def sized(tmp_path_factory) -> str:
    """Groups g01..g10 with 1..10 examples; group gNN's examples have NN words each;
    label = 0 in odd groups, 1 in even groups, except g10 which is half 0 and half 1."""
    rows = []
    for size in range(1, 11):
        for i in range(size):
            label = (size + 1) % 2 if size < 10 else i % 2
            rows.append({"user": f"g{size:02d}", "text": " ".join(["w"] * size), "label": label})
    out = tmp_path_factory.mktemp("stats") / "ds"
    fg.build(rows, "field:user", out, progress=False)
    return str(out)


def test_group_table_matches_the_reader(sized: str) -> None:
    t = group_table(sized)
    ds = fg.open(sized)
    assert t.column("key").to_pylist() == ds.keys()
    assert t.column("examples").to_pylist() == ds.group_sizes().tolist()
    assert t.column("words").to_pylist() == [s * s for s in range(1, 11)]
    assert t.column("parts").to_pylist() == [1] * 10


def test_summary_golden_numbers(sized: str) -> None:
    rows = {r["measure"]: r for r in summary(sized).to_pylist()}
    assert set(rows) == {"examples", "bytes", "words"}  # no tokens in this index
    ex = rows["examples"]
    sizes = np.arange(1, 11)
    assert (ex["groups"], ex["min"], ex["max"], ex["mean"], ex["total"]) == (10, 1, 10, 5.5, 55)
    assert ex["p50"] == np.percentile(sizes, 50) and ex["p90"] == np.percentile(sizes, 90)
    assert rows["words"]["total"] == sum(s * s for s in sizes)
    text = format_summary(summary(sized))
    assert text.startswith("groups: 10") and "p99" in text and "words" in text


def test_sizes_come_from_the_index_alone(sized: str, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sized, copy)
    ds = fg.open(copy)
    for shard in ds.manifest["shards"]:
        (copy / shard["path"]).unlink()  # no example can be read now
    assert summary(ds).column("total").to_pylist()[0] == 55


def test_a_view_counts_only_its_groups(sized: str) -> None:
    view = fg.open(sized).subset(["g02", "g05"])
    assert group_table(view).column("examples").to_pylist() == [2, 5]
    assert label_counts(view, "label").column("key").unique().to_pylist() == ["g02", "g05"]


def test_label_heterogeneity(sized: str) -> None:
    counts = label_counts(sized, "label")
    keys, labels, m = count_matrix(counts)
    assert labels == [0, 1] and m.sum() == 55
    assert m[keys.index("g10")].tolist() == [5, 5]
    per = {r["key"]: r for r in heterogeneity(counts).to_pylist()}
    # Overall: label 0 in g01,g03,…,g09 (25) plus 5 of g10 → 30 of 55.
    p0 = 30 / 55
    assert per["g01"]["tv_distance"] == pytest.approx(1 - p0)
    assert per["g02"]["tv_distance"] == pytest.approx(p0)
    assert per["g10"]["tv_distance"] == pytest.approx(abs(0.5 - p0))
    assert per["g10"]["labels"] == 2 and per["g10"]["top_share"] == 0.5
    summ = {r["measure"]: r for r in heterogeneity_summary(heterogeneity(counts)).to_pylist()}
    weighted = sum(per[k]["tv_distance"] * per[k]["examples"] for k in per) / 55
    assert summ["tv_distance (weighted by examples)"]["mean"] == pytest.approx(weighted)
    with pytest.raises(SettingError, match="no label column 'colour'"):
        label_counts(sized, "colour")


def test_iid_is_homogeneous_and_dirichlet_is_not(tmp_path) -> None:
    n = 20_000
    table = pa.table({"label": np.arange(n) % 10, "text": ["x"] * n})
    iid = fg.build(table, "iid:10:1", tmp_path / "iid", progress=False)
    from fedgroups.keys.partitioners import parse_partitioner
    skew = fg.build(table, parse_partitioner("dirichlet:10:0.1:label:1"), tmp_path / "d",
                    progress=False)

    def weighted_tv(path: str) -> float:
        rows = heterogeneity_summary(heterogeneity(label_counts(path, "label"))).to_pylist()
        return rows[-1]["mean"]

    assert weighted_tv(iid.path) < 0.05
    assert weighted_tv(skew.path) > 0.5


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fedgroups")
    add_stats_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_text_and_plot(sized: str, tmp_path, capsys) -> None:
    png = tmp_path / "img" / "stats.png"
    assert run_stats(parse(["stats", sized, "--plot", str(png), "--label", "label"])) == 0
    out = capsys.readouterr().out
    assert "groups: 10" in out and "tv_distance" in out and "plot:" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_cli_json(sized: str, capsys) -> None:
    assert run_stats(parse(["stats", sized, "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"][0]["measure"] == "examples" and out["summary"][0]["max"] == 10


def test_plot_with_many_labels_and_one_group(tmp_path) -> None:
    rows = [{"user": "only", "text": "a b c", "label": f"L{i % 30}"} for i in range(90)]
    path = fg.build(rows, "field:user", tmp_path / "one", progress=False).path
    out = plot_stats(group_table(path), tmp_path / "one.png", label_counts=label_counts(
        path, "label"), top_labels=5)
    with open(out, "rb") as f:
        assert f.read(4) == b"\x89PNG"
