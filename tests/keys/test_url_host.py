"""url-host keeps the host as Dataset Grouper's FedC4 does (www. kept); :strip-www merges
www.x.com with x.com, the same function the fedc4 recipe's www=strip uses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fedgroups.errors import SettingError
from fedgroups.keys import UrlHostKey, parse_key
from fedgroups.recipes.transforms import normalise_domains

URLS = ["https://www.example.com/a", "http://example.com/b", "https://WWW2.Example.COM./c",
        "http://user@news.bbc.co.uk:8080/y", "https://wwwide.org/"]


def _keys(spec: str, column: str = "url") -> list:
    return parse_key(spec).keys(pa.record_batch({column: URLS}), np.arange(len(URLS))).to_pylist()


def test_default_keeps_www_as_dataset_grouper():
    assert _keys("url-host:url") == ["www.example.com", "example.com", "www2.example.com.",
                                     "news.bbc.co.uk", "wwwide.org"]
    assert _keys("url-host:url:keep-www") == _keys("url-host:url")


def test_strip_www_gives_one_group_per_site():
    assert _keys("url-host:url:strip-www") == ["example.com", "example.com", "example.com",
                                               "news.bbc.co.uk", "wwwide.org"]
    hosts = pa.array(["www.example.com", "WWW3.a.org.", None])
    assert normalise_domains(hosts).to_pylist() == ["example.com", "a.org", None]


def test_options_and_column_names_with_colons():
    key = parse_key("url-host:meta:url:strip-www")
    assert isinstance(key, UrlHostKey) and key.field_name == "meta:url" and key.www == "strip"
    assert parse_key("url-host:meta:url").field_name == "meta:url"
    assert _keys("url-host:a:b", column="a:b")[0] == "www.example.com"
    assert key.describe() == {"spec": "url-host:meta:url:strip-www", "www": "strip"}
    with pytest.raises(SettingError, match=r"use url-host:FIELD\[:strip-www\]"):
        parse_key("url-host:")
