"""``url-host:FIELD[:strip-www]`` — the group is the host of a URL column (a web site).

By default the host is kept as it is (lower-cased, without port or user info), as
Dataset Grouper builds FedC4: it keys C4 by ``urllib.parse.urlparse(url).netloc``, so
``www.example.com`` and ``example.com`` are two groups. ``:strip-www`` drops a leading
``www.`` (or ``wwwN.``) and a trailing dot, making them one group; the ``fedc4`` recipe's
``www=strip`` option uses this same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import scalar
from fedgroups.errors import KeyFunctionError
from fedgroups.keys.base import ColumnKey, decoded_column, spec_column

# scheme://[userinfo@]host[:port]/... or protocol-relative //host/...
_URL_HOST_RE = r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|//)(?:[^@/?#\s]*@)?(?P<host>\[[^\]/]*\]|[^:/?#\s@]+)"
WwwMode = Literal["keep", "strip"]
_WWW_OPTIONS: dict[str, WwwMode] = {"strip-www": "strip", "keep-www": "keep"}
# a bare host with a dot, as in "example.com/page" (no scheme)
_BARE_HOST_RE = r"^(?P<host>[A-Za-z0-9\-_]+(?:\.[A-Za-z0-9\-_]+)+)(?:[:/?#]|$)"


def parse_hosts(urls: pa.Array) -> pa.Array:
    """The general parser (two regular expressions); exact but slow on long inputs."""
    hosts = pc.struct_field(pc.extract_regex(urls, _URL_HOST_RE), [0])
    if hosts.null_count > urls.null_count:
        bare = pc.struct_field(pc.extract_regex(urls, _BARE_HOST_RE), [0])
        hosts = pc.coalesce(hosts, bare)
    return hosts


def url_hosts(urls: pa.Array) -> pa.Array:
    """Lower-cased host of each URL (no port, no user info); null where there is none.

    Fast path for the common ``http(s)://host/...`` shape (prefix test + one split); any
    row whose host part holds ``:@?#[]`` or whitespace, or that has another scheme, goes
    through the general parser, so both paths give the same answer."""
    https = pc.starts_with(urls, "https://")
    http = pc.starts_with(urls, "http://")
    rest = pc.if_else(https, pc.utf8_slice_codeunits(urls, 8),
                      pc.if_else(http, pc.utf8_slice_codeunits(urls, 7),
                                 scalar(None, pa.string())))
    hosts = pc.list_element(pc.split_pattern(rest, "/", max_splits=1), scalar(0, pa.int64()))
    unusual = pc.fill_null(pc.match_substring_regex(hosts, r"[?#@:\[\]\s]|^$"),
                           scalar(True, pa.bool_()))
    if pc.any(unusual).as_py():
        slow = parse_hosts(urls.filter(unusual))
        hosts = pc.replace_with_mask(hosts, unusual, slow)
    return pc.utf8_lower(hosts)


def strip_www(hosts: pa.Array) -> pa.Array:
    """Lower-case hosts without a leading ``www.``/``wwwN.`` and a trailing dot
    (``WWW2.Example.COM.`` → ``example.com``): one group per site, whatever the prefix."""
    h = pc.utf8_lower(hosts)
    h = pc.replace_substring_regex(h, pattern=r"\.$", replacement="")
    return pc.replace_substring_regex(h, pattern=r"^www\d*\.", replacement="")


def site_hosts(urls: pa.Array, www: WwwMode = "keep") -> pa.Array:
    """The host of each URL (:func:`url_hosts`), with ``www.`` stripped if ``www="strip"``."""
    hosts = url_hosts(urls)
    return strip_www(hosts) if www == "strip" else hosts


@dataclass(frozen=True, kw_only=True)
class UrlHostKey(ColumnKey):
    """Each example's group is the lower-cased host of its URL in column ``field_name``;
    with ``www="strip"`` (KEYSPEC ``url-host:FIELD:strip-www``) without a leading ``www.``.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> batch = pa.record_batch({"url": ["https://A.org/x", "http://www.a.org:80/"]})
    >>> UrlHostKey.from_spec("url-host:url", "url").keys(batch, np.arange(2)).to_pylist()
    ['a.org', 'www.a.org']
    >>> key = UrlHostKey.from_spec("url-host:url:strip-www", "url:strip-www")
    >>> key.keys(batch, np.arange(2)).to_pylist()
    ['a.org', 'a.org']
    """

    usage = "url-host:FIELD[:strip-www]"

    www: WwwMode = "keep"

    @classmethod
    def from_spec(cls, spec: str, args: str) -> UrlHostKey:
        """``FIELD``, ``FIELD:strip-www`` or ``FIELD:keep-www`` (a column name may hold ':')."""
        name, _, option = args.rpartition(":")
        www = _WWW_OPTIONS.get(option) if name else None
        if www is None:
            name, www = args, "keep"
        name = spec_column(spec, name, cls.usage)
        return cls(spec=spec, field_name=name, columns=(name,), www=www)

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        col = decoded_column(batch, self.field_name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                or pa.types.is_string_view(col.type)):
            raise KeyFunctionError(
                f"key {self.spec!r}: column {self.field_name!r} has type {col.type}, "
                "url-host needs a string column of URLs"
            )
        return site_hosts(col.cast(pa.string()), self.www)

    def describe(self) -> dict[str, str]:
        return {"spec": self.spec, "www": self.www}
