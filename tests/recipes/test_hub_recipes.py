"""FedC4, FedWiki, FedBookCO, FedCCnews: parsing and keying on small tables in each base
dataset's schema, built for real; the hub path through a stubbed ``load_dataset``."""

from __future__ import annotations

import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import SettingError, SourceError
from fedgroups.recipes import RECIPES, get_recipe
from fedgroups.recipes.base import transformed
from fedgroups.recipes.transforms import split_schema, split_text
from fedgroups.sources import make_source

datasets = pytest.importorskip("datasets")


def sizes(path: str) -> dict:
    ds = fg.open(path)
    return dict(zip(ds.keys(), ds.group_sizes().tolist()))


def c4_table() -> pa.Table:
    urls = ["https://www.example.com/a", "http://example.com/b?x=1", "https://WWW.Example.COM./c",
            "https://news.bbc.co.uk/x", "http://user@news.bbc.co.uk:8080/y", "https://blog.io"]
    return pa.table({"text": [f"page {i} text" for i in range(len(urls))],
                     "timestamp": ["2019-04-25T12:57:54Z"] * len(urls), "url": urls})


def test_fedc4_groups_pages_by_host_as_url_host(tmp_path) -> None:
    """By default the host as Dataset Grouper keys FedC4 (urlparse's netloc: www. kept),
    lower-cased without port or user info: exactly the url-host:url key."""
    report = fg.recipes.fedc4(tmp_path / "c4", source=c4_table(), progress=False)
    assert sizes(report.path) == {"blog.io": 1, "example.com": 1, "www.example.com": 1,
                                  "www.example.com.": 1, "news.bbc.co.uk": 2}
    assert report.manifest["key"]["spec"] == "url-host:url"
    assert report.manifest["totals"]["words"] == 6 * 3
    plain = fg.build(c4_table(), "url-host:url", tmp_path / "plain", progress=False)
    assert sizes(plain.path) == sizes(report.path)


def test_fedc4_www_strip_is_url_host_strip_www(tmp_path) -> None:
    report = fg.recipes.fedc4(tmp_path / "c4", source=c4_table(), www="strip", progress=False)
    assert sizes(report.path) == {"blog.io": 1, "example.com": 3, "news.bbc.co.uk": 2}
    assert report.manifest["key"]["spec"] == "url-host:url:strip-www"
    plain = fg.build(c4_table(), "url-host:url:strip-www", tmp_path / "plain", progress=False)
    assert sizes(plain.path) == sizes(report.path)
    with pytest.raises(SettingError, match="www 'drop' is not one of: keep, strip"):
        fg.recipes.fedc4(tmp_path / "bad", source=c4_table(), www="drop", progress=False)


def wiki_table() -> pa.Table:
    return pa.table({
        "id": ["1", "2", "3"],
        "url": ["https://en.wikipedia.org/wiki/A", "https://en.wikipedia.org/wiki/B",
                "https://en.wikipedia.org/wiki/C"],
        "title": ["Anarchism", "Bee", "  "],
        "text": ["Anarchism is a philosophy.\n\nIt has history.\n \n\nAnd schools.",
                 "A bee is an insect.", "An article without a title."],
    })


def test_fedwiki_one_group_per_article_paragraph_examples(tmp_path) -> None:
    report = fg.recipes.fedwiki(tmp_path / "wiki", source=wiki_table(), progress=False,
                                on_missing_key="drop")
    assert sizes(report.path) == {"Anarchism": 3, "Bee": 1}
    assert report.manifest["totals"]["dropped_examples"] == 1  # the untitled article
    rows = list(fg.open(report.path).group("Anarchism"))
    assert [(r["piece"], r["text"]) for r in rows] == [
        (0, "Anarchism is a philosophy."), (1, "It has history."), (2, "And schools.")]
    assert rows[0]["url"] == "https://en.wikipedia.org/wiki/A"


def test_fedwiki_document_unit_keeps_articles_whole(tmp_path) -> None:
    report = fg.recipes.fedwiki(tmp_path / "wiki", source=wiki_table().slice(0, 2),
                                unit="document", progress=False)
    assert sizes(report.path) == {"Anarchism": 1, "Bee": 1}


def test_fedbookco_lines_of_books(tmp_path) -> None:
    books = pa.table({"title": ["moby.epub.txt", "emma.epub.txt"],
                      "text": ["Call me Ishmael.\nSome years ago.\r\n\nNever mind how long.",
                               "Emma Woodhouse, handsome, clever."]})
    report = fg.recipes.fedbookco(tmp_path / "books", source=books, unit="line", progress=False)
    assert sizes(report.path) == {"emma.epub.txt": 1, "moby.epub.txt": 3}
    para = fg.recipes.fedbookco(tmp_path / "p", source=books, progress=False)
    assert sizes(para.path) == {"emma.epub.txt": 1, "moby.epub.txt": 2}


def news_table() -> pa.Table:
    return pa.table({
        "title": ["a", "b", "c", "d"], "text": ["x", "y", "z", "w"],
        "domain": ["www.nytimes.com", "nytimes.com", "", None],
        "date": ["2017-12-01 19:40:27"] * 4, "description": [""] * 4,
        "url": ["https://www.nytimes.com/1", "https://nytimes.com/2",
                "https://www.reuters.com/3", "http://www2.reuters.com/4"],
        "image_url": [None] * 4,
    })


def test_fedccnews_domain_column_then_url(tmp_path) -> None:
    report = fg.recipes.fedccnews(tmp_path / "news", source=news_table(), progress=False)
    assert sizes(report.path) == {"nytimes.com": 2, "reuters.com": 2}


def test_missing_columns_name_the_recipe_and_the_schema() -> None:
    with pytest.raises(SourceError, match="fedc4.*'url'"):
        get_recipe("fedc4").build_args(source=pa.table({"text": ["x"]}))


def test_registry_and_errors() -> None:
    # the hub recipes and Shakespeare are registered (other recipes have their own tests)
    assert {"fedc4", "fedwiki", "fedbookco", "fedccnews", "shakespeare"} <= set(RECIPES)
    for r in RECIPES.values():
        assert r.description and r.base and r.group and r.expected
    with pytest.raises(SettingError, match="recipes are: fedc4"):
        get_recipe("fedmnist")
    with pytest.raises(SettingError, match="no option"):
        get_recipe("fedc4").build_args(unit="paragraph")
    with pytest.raises(SettingError, match="unknown argument"):
        fg.recipes.fedccnews("/tmp/never", source=pa.table({"x": [1]}), colour="red")
    with pytest.raises(SettingError, match="unit"):
        get_recipe("fedwiki").build_args(source=wiki_table(), unit="sentence")


def test_hub_path_loads_with_the_right_name_config_and_split(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_load(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        table = {"wikimedia/wikipedia": wiki_table(), "vblagoje/cc_news": news_table()}.get(
            name, c4_table())
        return datasets.Dataset.from_dict(table.to_pydict())

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    report = fg.recipes.fedc4(tmp_path / "c4", config="realnewslike", split="validation",
                              streaming=False, progress=False)
    assert calls == [("allenai/c4", "realnewslike", "validation", False)]
    assert sizes(report.path)["news.bbc.co.uk"] == 2
    get_recipe("fedccnews").build_args(streaming="true")  # as --recipe-option gives it
    assert calls[-1] == ("vblagoje/cc_news", None, "train", True)
    with pytest.raises(SettingError, match="true or false"):
        get_recipe("fedccnews").build_args(streaming="maybe")
    source, _, _ = get_recipe("fedwiki").build_args()  # the CLI path: all defaults
    assert calls[-1] == ("wikimedia/wikipedia", "20231101.en", "train", False)
    assert source.description["spec"] == "hf:wikimedia/wikipedia:20231101.en"
    assert "title" in source.schema.names and "piece" in source.schema.names


def test_hub_failure_is_a_clear_error(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(SourceError, match="vblagoje/cc_news.*no network.*source="):
        get_recipe("fedccnews").build_args()


def test_split_transform_streams_in_bounded_calls() -> None:
    book = "\n\n".join(f"paragraph {i}" for i in range(5_000))
    src = make_source(pa.table({"title": ["big"] * 3, "text": [book] * 3}))
    seen_rows = []

    def spy(batch: pa.RecordBatch) -> pa.RecordBatch:
        seen_rows.append(batch.num_rows)
        return split_text(batch, "text", "paragraph")

    wrapped = transformed(src, spy, split_schema(src.schema, "paragraph"), "split", rows_per_call=1)
    out = [b for u in range(wrapped.num_units) for b in wrapped.read(u)]
    assert seen_rows == [1, 1, 1]  # one book per call: output bounded by one book
    assert sum(b.num_rows for b in out) == 15_000
    assert out[0].schema == wrapped.schema
    assert out[0].column("piece").to_pylist()[:3] == [0, 1, 2]
