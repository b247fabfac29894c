"""Key functions: URL hosts agree with urllib, hashing is stable, parsing is strict."""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgroups.errors import SettingError
from fedgroups.keys import parse_key, partition_of, stable_hash, url_hosts

HOST = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){1,3}", fullmatch=True)


@given(scheme=st.sampled_from(["http", "https", "ftp"]), host=HOST,
       port=st.one_of(st.none(), st.integers(1, 65535)),
       user=st.one_of(st.none(), st.from_regex(r"[a-z]{1,5}(:[a-z]{1,5})?", fullmatch=True)),
       path=st.from_regex(r"(/[a-zA-Z0-9._~-]{0,8}){0,3}(\?[a-z=&]{0,8})?", fullmatch=True),
       upper=st.booleans())
def test_url_host_matches_urllib(scheme, host, port, user, path, upper):
    netloc = (f"{user}@" if user else "") + (host.upper() if upper else host) + \
        (f":{port}" if port else "")
    url = f"{scheme}://{netloc}{path}"
    assert url_hosts(pa.array([url]))[0].as_py() == urlsplit(url).hostname


def test_stable_hash_is_fixed_forever():
    # Changing these numbers changes every dataset's shard layout: a format change.
    assert stable_hash("example.com") == stable_hash("example.com")
    assert stable_hash("a") != stable_hash(b"a") != stable_hash(97)
    assert [int(p) for p in partition_of(pa.array(["a", "b", "c", "a"]), 7)][0] == \
        [int(p) for p in partition_of(pa.array(["a", "b", "c", "a"]), 7)][3]
    assert stable_hash("fedgroups") == 0x11d4d22ef8393c21


@given(st.lists(st.text(max_size=5), min_size=1, max_size=50), st.integers(1, 9))
def test_partition_of_is_a_pure_function_of_the_key(keys, n):
    parts = partition_of(pa.array(keys, pa.string()), n)
    assert ((0 <= parts) & (parts < n)).all()
    again = {k: int(p) for k, p in zip(keys, partition_of(pa.array(keys[::-1]), n)[::-1])}
    assert all(again[k] == int(p) for k, p in zip(keys, parts))


@pytest.mark.parametrize("spec, msg", [
    ("field:", "use field:NAME"), ("nope", "not a KEYSPEC"), ("hash:x:f", "N must"),
    ("hash:3", "use hash:N:FIELD"), ("url-host:", "use url-host:FIELD"), ("iid:", "use iid"),
    ("python:mod", "use python:MODULE:FUNCTION"), ("iid:5:-1", "SEED"), ("python:no.such.mod:f", "cannot import"),
])
def test_bad_keyspecs(spec, msg):
    with pytest.raises(SettingError, match=msg):
        parse_key(spec)


def test_iid_key_is_uniform_and_seeded():
    k = parse_key("iid:8:3")
    batch = pa.record_batch({"x": np.arange(80_000)})
    keys = np.asarray(k.keys(batch, np.arange(80_000, dtype=np.uint64)))
    counts = np.bincount(keys, minlength=8)
    assert counts.min() > 9_500 and counts.max() < 10_500


URLISH = st.builds(lambda prefix, rest: prefix + rest,
                   st.sampled_from(["", "http://", "https://", "HTTP://", "//"]),
                   st.text(alphabet=st.sampled_from(list("htps:/?#@[]. aZ09-")), max_size=30))


@given(st.lists(st.one_of(st.none(), URLISH), max_size=20))
def test_url_host_fast_path_equals_the_general_parser(urls):
    from fedgroups.keys.url_host import parse_hosts

    arr = pa.array(urls, pa.string())
    expected = [None if h is None else h.lower() for h in parse_hosts(arr).to_pylist()]
    assert url_hosts(arr).to_pylist() == expected
