"""``url-host:FIELD`` — the group is the host of a URL column (a web site, as in FedC4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.arrays import scalar
from fedgroups.errors import KeyFunctionError
from fedgroups.keys.base import ColumnKey, decoded_column

# scheme://[userinfo@]host[:port]/... or protocol-relative //host/...
_URL_HOST_RE = r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|//)(?:[^@/?#\s]*@)?(?P<host>\[[^\]/]*\]|[^:/?#\s@]+)"
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


@dataclass(frozen=True, kw_only=True)
class UrlHostKey(ColumnKey):
    """Each example's group is the lower-cased host of its URL in column ``field_name``.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = UrlHostKey.from_spec("url-host:url", "url")
    >>> key.keys(pa.record_batch({"url": ["https://A.org/x", "http://b.net:80/"]}),
    ...          np.arange(2)).to_pylist()
    ['a.org', 'b.net']
    """

    usage = "url-host:FIELD"

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        col = decoded_column(batch, self.field_name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise KeyFunctionError(
                f"key {self.spec!r}: column {self.field_name!r} has type {col.type}, "
                "url-host needs a string column of URLs"
            )
        return url_hosts(col.cast(pa.string()))
