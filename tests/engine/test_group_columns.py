"""Group columns (``--group-columns``): one value per group, kept in the index."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.cli import main
from fedgroups.errors import FedGroupsError, GroupColumnError, SettingError
from fedgroups.format.spec import INDEX_FILE
from fedgroups.format.verify import verify

LANGS = {"en": "germanic", "de": "germanic", "fr": "romance", "es": "romance", "it": "romance"}


def _rows(n: int = 600, users: int = 12) -> list[dict]:
    """Users with a language and its family; each user's rows spread over the source."""
    langs = sorted(LANGS)
    out = []
    for i in range(n):
        u = i % users
        lang = langs[u % len(langs)]
        out.append({"user": f"u{u:02d}", "lang": lang, "family": LANGS[lang],
                    "year": 2000 + u, "text": f"word {i} " * (1 + i % 3)})
    return out


def _build(rows, out, **kw):
    kw.setdefault("workers", 1)
    return fg.build(rows, "field:user", out, progress=False, **kw)


def test_values_recorded_per_group_and_per_part(tmp_path):
    # shards of 1 KiB: every group (~50 rows of ~40 bytes) is cut into several parts
    report = _build(_rows(), tmp_path / "ds", group_columns=("family", "lang", "year"),
                    shard_size=1024, num_partitions=2)
    assert report.manifest["group_columns"] == ["family", "lang", "year"]
    index = pq.read_table(tmp_path / "ds" / INDEX_FILE)
    assert max(index.column("part").to_pylist()) >= 2
    for row in index.to_pylist():  # each part row repeats its group's values
        u = int(row["key"][1:])
        lang = sorted(LANGS)[u % len(LANGS)]
        assert (row["group_column.lang"], row["group_column.family"],
                row["group_column.year"]) == (lang, LANGS[lang], 2000 + u)
    ds = fg.open(tmp_path / "ds")
    assert ds.group_columns == ("family", "lang", "year")
    table = ds.group_table()
    assert table.column_names == ["key", "family", "lang", "year"]
    assert table.column("key").to_pylist() == ds.keys()
    assert table.select(["key", "lang"]).to_pylist()[:2] == [
        {"key": "u00", "lang": "de"}, {"key": "u01", "lang": "en"}]
    assert ds.group_table(["lang"]).column_names == ["key", "lang"]
    view = ds.subset(["u03", "u07"])
    assert view.group_table(["year"]).to_pylist() == [{"key": "u03", "year": 2003},
                                                      {"key": "u07", "year": 2007}]
    assert verify(str(tmp_path / "ds")) == []


def test_group_table_reads_only_the_index(tmp_path):
    _build(_rows(), tmp_path / "ds", group_columns="lang")
    ds = fg.open(tmp_path / "ds")
    for shard in ds.manifest["shards"]:
        (tmp_path / "ds" / shard["path"]).unlink()
    assert ds.group_table().num_rows == 12


def test_without_group_columns(tmp_path):
    _build(_rows(60), tmp_path / "ds")
    ds = fg.open(tmp_path / "ds")
    assert ds.group_columns == () and ds.manifest["group_columns"] == []
    assert ds.group_table().column_names == ["key"]
    with pytest.raises(FedGroupsError, match=r"no group column 'lang'.*none"):
        ds.group_table(["lang"])


def test_asking_for_a_column_not_recorded_names_those_that_are(tmp_path):
    _build(_rows(60), tmp_path / "ds", group_columns="lang,family")
    with pytest.raises(FedGroupsError, match=r"no group column 'year'.*'lang', 'family'"):
        fg.open(tmp_path / "ds").group_table(["lang", "year"])


def test_varying_within_a_group_names_group_column_and_values(tmp_path):
    rows = _rows(60)
    rows[37]["lang"] = "xx"  # user u01 ("en") has one row in another language
    with pytest.raises(GroupColumnError) as e:
        _build(rows, tmp_path / "ds", group_columns="family,lang")
    msg = str(e.value)
    assert "'u01'" in msg and "'lang'" in msg and "'en'" in msg and "'xx'" in msg
    assert not (tmp_path / "ds").exists()


def test_varying_across_chunks_and_parts_is_caught(tmp_path):
    # rows of 600 bytes, row groups of 512: every row is a chunk of its own, so only the
    # check from one chunk to the next (and one part to the next) can see the change
    rows = [{"user": "a", "lang": "en", "text": "x" * 600} for _ in range(6)]
    rows.append({"user": "a", "lang": "de", "text": "x" * 600})
    with pytest.raises(GroupColumnError, match=r"group 'a': column 'lang'.*'en' and 'de'"):
        _build(rows, tmp_path / "ds", group_columns=["lang"], shard_size=2048)


def test_nulls_and_nans_are_values_like_any_other(tmp_path):
    rows = [{"user": u, "lang": None if u == "a" else "en", "w": math.nan if u == "b" else 1.0}
            for u in "abc" for _ in range(5)]
    _build(rows, tmp_path / "ds", group_columns="lang,w")
    table = fg.open(tmp_path / "ds").group_table()
    assert table.column("lang").to_pylist() == [None, "en", "en"]
    w = table.column("w").to_pylist()
    assert math.isnan(w[1]) and w[0] == w[2] == 1.0
    rows[0]["lang"] = "en"  # group a: one "en", four nulls
    with pytest.raises(GroupColumnError, match="group 'a'"):
        _build(rows, tmp_path / "ds2", group_columns="lang")


def test_missing_column_is_named_with_the_existing_ones(tmp_path):
    with pytest.raises(SettingError, match=r"group column 'country' does not exist.*"
                                           r"columns are: user, lang, family, year, text"):
        _build(_rows(20), tmp_path / "ds", group_columns="lang,country")


@pytest.mark.parametrize("name", ["key", "__group__", "__ordinal__"])
def test_reserved_names_are_refused(tmp_path, name):
    rows = [{"user": "a", name: 1}]
    with pytest.raises(SettingError, match=f"group column '{name}' collides"):
        _build(rows, tmp_path / "ds", group_columns=[name])


def test_duplicate_blank_and_nested_are_refused(tmp_path):
    rows = [{"user": "a", "lang": "en", "tags": ["x"]}]
    with pytest.raises(SettingError, match="'lang' twice"):
        _build(rows, tmp_path / "ds", group_columns="lang,lang")
    with pytest.raises(SettingError, match="non-empty"):
        _build(rows, tmp_path / "ds", group_columns="lang,")
    with pytest.raises(SettingError, match="'tags' has type list"):
        _build(rows, tmp_path / "ds", group_columns="tags")


def test_cli_build_and_info(tmp_path, capsys):
    import json
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(40)))
    out = str(tmp_path / "out")
    assert main(["build", str(src), out, "--key", "field:user", "--group-columns",
                 "family,lang", "--quiet", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["info", out]) == 0
    assert "group columns" in (text := capsys.readouterr().out) and "family, lang" in text
    assert fg.open(out).group_table().num_rows == 12
    assert main(["build", str(src), str(tmp_path / "o2"), "--key", "field:user",
                 "--group-columns", "text", "--quiet"]) == 2
    assert "column 'text' is not constant" in capsys.readouterr().err
