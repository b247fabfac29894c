"""Vectorised preprocessing and keys shared by the recipes (Arrow batch in → batch out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedgroups.keys import KeyFunction, decoded_column, url_hosts
from fedgroups.keys.url_host import strip_www

SplitUnit = Literal["document", "paragraph", "line"]
_PATTERNS = {"paragraph": r"\n(?:[ \t\r]*\n)+", "line": r"\r?\n"}


def split_schema(schema: pa.Schema, unit: SplitUnit) -> pa.Schema:
    """The schema after :func:`split_text`: the input's plus the piece's position."""
    if unit == "document":
        return schema
    return schema.append(pa.field("piece", pa.int32()))


def split_text(batch: pa.RecordBatch, column: str, unit: SplitUnit) -> pa.RecordBatch:
    """One row per paragraph (or line) of ``column``; other columns repeated; a ``piece``
    column numbers the pieces of each input row from 0. Blank pieces are dropped."""
    if unit == "document":
        return batch
    text = decoded_column(batch, column)
    pieces = pc.split_pattern_regex(text, _PATTERNS[unit])
    flat = pc.utf8_trim_whitespace(pc.list_flatten(pieces))
    parents = pc.list_parent_indices(pieces).to_numpy(zero_copy_only=False)
    offsets = pieces.offsets.to_numpy(zero_copy_only=False)
    position = np.arange(len(flat), dtype=np.int64) - offsets[parents]
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    out = batch.take(pa.array(parents[keep]))
    idx = out.schema.get_field_index(column)
    out = out.set_column(idx, out.schema.field(idx), flat.filter(pa.array(keep)).cast(
        out.schema.field(idx).type))
    return out.append_column(pa.field("piece", pa.int32()),
                             pa.array(position[keep].astype(np.int32)))


def normalise_domains(hosts: pa.Array) -> pa.Array:
    """Lower-case, drop a trailing dot and a leading ``www.``/``www2.``: one key per
    publisher (the same function as ``url-host:FIELD:strip-www``)."""
    return strip_www(hosts)


@dataclass(frozen=True, kw_only=True)
class DomainKey(KeyFunction):
    """The site of a page: ``domain_field`` if given and set, else the host of ``url_field``,
    normalised by :func:`normalise_domains` (``www.bbc.co.uk`` and ``bbc.co.uk`` are one
    group). Null where neither gives a host."""

    url_field: str
    domain_field: str | None = None

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        hosts = url_hosts(decoded_column(batch, self.url_field).cast(pa.string()))
        if self.domain_field is not None:
            given = decoded_column(batch, self.domain_field).cast(pa.string())
            given = pc.if_else(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(given)), 0),
                               pa.scalar(None, pa.string()), given)
            hosts = pc.coalesce(url_hosts(given), hosts)
        return normalise_domains(hosts)


@dataclass(frozen=True, kw_only=True)
class TitleKey(KeyFunction):
    """A title column, whitespace-trimmed; empty titles have no group."""

    field_name: str

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        t = pc.utf8_trim_whitespace(decoded_column(batch, self.field_name).cast(pa.string()))
        return pc.if_else(pc.equal(pc.utf8_length(t), 0), pa.scalar(None, pa.string()), t)
