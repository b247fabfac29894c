"""The four recipes built from Hugging Face hub datasets: FedC4, FedWiki, FedBookCO, FedCCnews.

Hub names and columns (checked against the dataset cards):

- ``allenai/c4``: configs ``en``, ``en.noblocklist``, ``realnewslike``, ``en.noclean``,
  ``multilingual``; columns ``text``, ``timestamp``, ``url``.
- ``wikimedia/wikipedia``: configs ``YYYYMMDD.LANG`` (``20231101.en``); columns ``id``,
  ``url``, ``title``, ``text``.
- BookCorpusOpen: the original ``bookcorpusopen`` is defunct on the hub; the default mirror
  is ``lucadiliello/bookcorpusopen`` (assumed columns ``title``, ``text``, as the original).
  ``name=`` picks another copy with those columns.
- ``vblagoje/cc_news``: columns ``title``, ``text``, ``domain``, ``date``, ``description``,
  ``url``, ``image_url`` (708,241 English articles, 2017–2019).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fedgroups.keys.functions import KeyFunction, parse_key
from fedgroups.recipes.base import Recipe, local_or_hub, require_columns, transformed
from fedgroups.recipes.transforms import (
    DomainKey,
    SplitUnit,
    TitleKey,
    split_schema,
    split_text,
)

Prepared = tuple[Any, KeyFunction, dict[str, Any]]


def _split_source(src: Any, unit: SplitUnit, recipe: str) -> Any:
    if unit == "document":
        return src
    if unit not in ("paragraph", "line"):
        from fedgroups.errors import SettingError
        raise SettingError(f"recipe {recipe!r}: unit {unit!r} is not one of: document, "
                           "paragraph, line")
    return transformed(src, partial(split_text, column="text", unit=unit),
                       split_schema(src.schema, unit), what=f"split text into {unit}s")


def prepare_fedc4(*, split: str, config: str = "en", streaming: bool = True,
                  www: str = "keep", source: Any = None) -> Prepared:
    """The key is ``url-host:url``, the host as Dataset Grouper keys FedC4 (``www.`` kept);
    ``www="strip"`` is ``url-host:url:strip-www`` (one group for www.x.com and x.com)."""
    if www not in ("keep", "strip"):
        from fedgroups.errors import SettingError
        raise SettingError(f"recipe 'fedc4': www {www!r} is not one of: keep, strip")
    src = local_or_hub(source, "allenai/c4", config, split, streaming)
    require_columns(src, ("text", "url"), "fedc4")
    key = parse_key("url-host:url" + (":strip-www" if www == "strip" else ""))
    return src, key, {"text_column": "text"}


def prepare_fedwiki(*, split: str, config: str = "20231101.en", streaming: bool = False,
                    unit: SplitUnit = "paragraph", source: Any = None) -> Prepared:
    src = local_or_hub(source, "wikimedia/wikipedia", config, split, streaming)
    require_columns(src, ("title", "text"), "fedwiki")
    key = TitleKey(spec="fedwiki:title", columns=("title",), field_name="title")
    return _split_source(src, unit, "fedwiki"), key, {"text_column": "text"}


def prepare_fedbookco(*, split: str, name: str = "lucadiliello/bookcorpusopen",
                      streaming: bool = False, unit: SplitUnit = "paragraph",
                      source: Any = None) -> Prepared:
    src = local_or_hub(source, name, None, split, streaming)
    require_columns(src, ("title", "text"), "fedbookco")
    key = TitleKey(spec="fedbookco:title", columns=("title",), field_name="title")
    return _split_source(src, unit, "fedbookco"), key, {"text_column": "text"}


def prepare_fedccnews(*, split: str, streaming: bool = False, source: Any = None) -> Prepared:
    src = local_or_hub(source, "vblagoje/cc_news", None, split, streaming)
    require_columns(src, ("text", "domain", "url"), "fedccnews")
    key = DomainKey(spec="fedccnews:domain", columns=("url", "domain"), url_field="url",
                    domain_field="domain")
    return src, key, {"text_column": "text"}


_COMMON = {"streaming": "stream from the hub instead of downloading first (bool)",
           "source": "local data in the base dataset's schema instead of the hub"}
_UNIT = {"unit": "document | paragraph (default) | line: what one example is"}

FEDC4 = Recipe(
    name="fedc4", prepare=prepare_fedc4,
    description="C4 web pages grouped by website (the URL's host, as url-host:url)",
    base="allenai/c4 (config en by default)", group="URL host of the page",
    options={"config": "C4 config: en, en.noblocklist, realnewslike, en.noclean, "
                       "multilingual",
             "www": "keep (default: www.x.com and x.com are two groups, as Dataset Grouper's "
                    "FedC4) | strip (one group, url-host:url:strip-www)", **_COMMON},
    expected="en/train: 365M pages; ~15.6M websites; heavy-tailed (most sites have a few "
             "pages, the largest tens of thousands)")
FEDWIKI = Recipe(
    name="fedwiki", prepare=prepare_fedwiki,
    description="Wikipedia articles, one group per article, examples are paragraphs",
    base="wikimedia/wikipedia (dump 20231101.en by default)", group="article title",
    options={"config": "dump and language, e.g. 20231101.en", **_UNIT, **_COMMON},
    expected="20231101.en: 6.4M articles (groups); median article a handful of paragraphs")
FEDBOOKCO = Recipe(
    name="fedbookco", prepare=prepare_fedbookco,
    description="BookCorpusOpen, one group per book, examples are paragraphs",
    base="BookCorpusOpen (lucadiliello/bookcorpusopen by default)", group="book title",
    options={"name": "hub name of a BookCorpusOpen copy (columns title, text)", **_UNIT,
             **_COMMON},
    expected="17,868 books (groups); on the order of 1k-10k paragraphs per book")
FEDCCNEWS = Recipe(
    name="fedccnews", prepare=prepare_fedccnews,
    description="CC-News articles grouped by publisher domain",
    base="vblagoje/cc_news", group="publisher domain (domain column, else URL host)",
    options=dict(_COMMON),
    expected="708,241 articles; a few thousand publishers; heavy-tailed")
