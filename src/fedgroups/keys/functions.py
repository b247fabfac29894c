"""Key functions: an Arrow batch of examples in, one group key per example out.

Every key function is deterministic; random ones (``iid``) take a seed and hash the
example's position in the source, so any engine, any worker count, gives the same keys.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.errors import KeyFunctionError, SettingError
from fedgroups.format.rows import to_dicts
from fedgroups.keys.hashing import hash_array, splitmix64


class KeyRowError(Exception):
    """A key function failed on one row of a batch; the engine adds the file and row."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


@dataclass(frozen=True, kw_only=True)
class KeyFunction:
    """Base: subclasses implement ``keys(batch, ordinals) -> pa.Array``."""

    spec: str
    columns: tuple[str, ...] | None = None  # columns it reads; None means all

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def check_columns(self, schema: pa.Schema, where: str) -> None:
        for name in self.columns or ():
            if name not in schema.names:
                raise SettingError(
                    f"key {self.spec!r}: column {name!r} does not exist in {where}; "
                    f"columns are: {', '.join(schema.names)}"
                )
            t = schema.field(name).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                    or pa.types.is_large_binary(t) or pa.types.is_integer(t)
                    or pa.types.is_null(t) or pa.types.is_string_view(t)):
                raise SettingError(
                    f"key {self.spec!r}: column {name!r} has type {t}; a key column must hold "
                    "strings, bytes or integers (use a python: key function to convert)"
                )


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    col = batch.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    return col


def normalise_key_array(arr: pa.Array, what: str) -> pa.Array:
    """Cast a key column to one of the three key types (string, binary, int64)."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        out = arr.cast(pa.string())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        out = arr.cast(pa.binary())
    elif pa.types.is_integer(t):
        out = arr.cast(pa.int64())
    elif pa.types.is_null(t):
        out = arr.cast(pa.string())
    else:
        raise KeyFunctionError(
            f"{what} has type {t}; a group key must be a string, bytes or an integer"
        )
    return out


@dataclass(frozen=True, kw_only=True)
class FieldKey(KeyFunction):
    field_name: str

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        return normalise_key_array(_column(batch, self.field_name), f"column {self.field_name!r}")


# scheme://[userinfo@]host[:port]/... or protocol-relative //host/...
_URL_HOST_RE = r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|//)(?:[^@/?#\s]*@)?(?P<host>\[[^\]/]*\]|[^:/?#\s@]+)"
# a bare host with a dot, as in "example.com/page" (no scheme)
_BARE_HOST_RE = r"^(?P<host>[A-Za-z0-9\-_]+(?:\.[A-Za-z0-9\-_]+)+)(?:[:/?#]|$)"


def _parse_hosts(urls: pa.Array) -> pa.Array:
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
                                 pa.scalar(None, pa.string())))
    hosts = pc.list_element(pc.split_pattern(rest, "/", max_splits=1), 0)
    unusual = pc.fill_null(pc.match_substring_regex(hosts, r"[?#@:\[\]\s]|^$"), True)
    if pc.any(unusual).as_py():
        slow = _parse_hosts(urls.filter(unusual))
        hosts = pc.replace_with_mask(hosts, unusual, slow)
    return pc.utf8_lower(hosts)


@dataclass(frozen=True, kw_only=True)
class UrlHostKey(KeyFunction):
    field_name: str

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        col = _column(batch, self.field_name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise KeyFunctionError(
                f"key {self.spec!r}: column {self.field_name!r} has type {col.type}, "
                "url-host needs a string column of URLs"
            )
        return url_hosts(col.cast(pa.string()))


@dataclass(frozen=True, kw_only=True)
class HashKey(KeyFunction):
    field_name: str
    num_groups: int

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        col = normalise_key_array(_column(batch, self.field_name), f"column {self.field_name!r}")
        buckets = pa.array((hash_array(col) % np.uint64(self.num_groups)).astype(np.int64))
        if col.null_count:  # a missing value has no group; keep it null
            buckets = pc.if_else(pc.is_null(col), pa.scalar(None, pa.int64()), buckets)
        return buckets


@dataclass(frozen=True, kw_only=True)
class IidKey(KeyFunction):
    num_groups: int
    seed: int = 0

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        salt = splitmix64(np.array([self.seed], dtype=np.uint64))[0]
        mixed = splitmix64(ordinals.astype(np.uint64) ^ salt)
        return pa.array((mixed % np.uint64(self.num_groups)).astype(np.int64))

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed": self.seed}


def _python_value_to_key(values: list[Any], what: str) -> pa.Array:
    kinds = set()
    for row, v in enumerate(values):
        if v is None:
            continue  # no group: the engine applies the on_missing_key policy
        if isinstance(v, bool) or not isinstance(v, (str, bytes, int, np.integer)):
            raise KeyRowError(
                row, f"{what} returned {type(v).__name__} {v!r:.80}; return str, bytes or int"
            )
        kinds.add(str if isinstance(v, str) else bytes if isinstance(v, bytes) else int)
    if len(kinds) > 1:
        raise KeyFunctionError(f"{what} returned keys of mixed types {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop() if kinds else str
    typ = {str: pa.string(), bytes: pa.binary(), int: pa.int64()}[kind]
    return pa.array([None if v is None else int(v) for v in values] if kind is int else values,
                    type=typ)


@dataclass(frozen=True, kw_only=True)
class CallableKey(KeyFunction):
    """A user function: one example (dict) → key, or, if ``batched``, a batch → keys."""

    fn: Callable[..., Any] = field(compare=False)
    batched: bool = False

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        if self.batched:
            try:
                out = self.fn(batch)
            except Exception as e:  # the user's code: report, don't crash deep inside
                raise KeyRowError(0, f"key function {name} raised {type(e).__name__}: {e}") from e
            if isinstance(out, (pa.Array, pa.ChunkedArray)):
                arr = out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
                arr = normalise_key_array(arr, f"key function {name}")
            else:
                arr = _python_value_to_key(list(out), f"key function {name}")
            if len(arr) != batch.num_rows:
                raise KeyFunctionError(
                    f"key function {name} returned {len(arr)} keys for {batch.num_rows} examples"
                )
            return arr
        rows = to_dicts(batch)
        values = []
        for row, example in enumerate(rows):
            try:
                values.append(self.fn(example))
            except Exception as e:
                raise KeyRowError(row, f"key function {name} raised {type(e).__name__}: {e}") from e
        return _python_value_to_key(values, f"key function {name}")

    def describe(self) -> dict[str, Any]:
        name = getattr(self.fn, "__module__", "?") + ":" + getattr(self.fn, "__qualname__", "?")
        return {"spec": self.spec, "callable": name, "batched": self.batched}


def batched(fn: Callable[[pa.RecordBatch], Any]) -> Callable[[pa.RecordBatch], Any]:
    """Mark a key function as vectorised: it takes an Arrow batch and returns one key per row."""
    fn.__fedgroups_batched__ = True  # type: ignore[attr-defined]
    return fn


def _positive_int(text: str, spec: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise SettingError(f"key {spec!r}: {what} must be a positive integer, got {text!r}")
    return n


KEYSPEC_HELP = (
    "field:NAME | url-host:FIELD | hash:N:FIELD | iid:N[:SEED] | python:MODULE:FUNCTION | "
    "dirichlet:N:ALPHA:LABEL[:SEED] | pathological:N:K:LABEL:L[:SEED] | "
    "power-law:N:EXPONENT[:SEED] | super:M:FIELD[:SEED]"
)


def parse_key(key: str | Callable[..., Any] | KeyFunction) -> KeyFunction:
    """A KEYSPEC string or a callable → KeyFunction."""
    if isinstance(key, KeyFunction):
        return key
    if callable(key):
        return CallableKey(
            spec="python-callable", fn=key, batched=bool(getattr(key, "__fedgroups_batched__", False))
        )
    if not isinstance(key, str):
        raise SettingError(f"key must be a KEYSPEC string or a callable, got {type(key).__name__}")
    kind, _, rest = key.partition(":")
    if kind == "field" and rest:
        return FieldKey(spec=key, field_name=rest, columns=(rest,))
    if kind == "url-host" and rest:
        return UrlHostKey(spec=key, field_name=rest, columns=(rest,))
    if kind == "hash":
        n, _, fld = rest.partition(":")
        if fld:
            return HashKey(spec=key, field_name=fld, columns=(fld,),
                           num_groups=_positive_int(n, key, "N"))
    if kind == "iid" and rest:
        n, _, seed = rest.partition(":")
        if seed and not seed.isdigit():
            raise SettingError(f"key {key!r}: SEED must be a non-negative integer, got {seed!r}")
        return IidKey(spec=key, columns=(), num_groups=_positive_int(n, key, "N"),
                      seed=int(seed or 0))
    if kind == "python":
        module, _, fname = rest.partition(":")
        if module and fname:
            try:
                fn = getattr(importlib.import_module(module), fname)
            except (ImportError, AttributeError) as e:
                raise SettingError(f"key {key!r}: cannot import {fname} from {module}: {e}") from e
            return CallableKey(spec=key, fn=fn,
                               batched=bool(getattr(fn, "__fedgroups_batched__", False)))
    from fedgroups.keys.partitioners import parse_partitioner

    partitioner = parse_partitioner(key)
    if partitioner is not None:
        return partitioner
    raise SettingError(f"key {key!r} is not a KEYSPEC; use one of: {KEYSPEC_HELP}")
