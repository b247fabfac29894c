"""Objects that export an Arrow C stream (``__arrow_c_stream__``): a Polars DataFrame, a
DuckDB relation, a ``pyarrow.RecordBatchReader``, … read through
``pa.RecordBatchReader.from_stream`` without a copy, once, in order.

A Polars LazyFrame has no stream of its own: it is collected first.

Examples
--------
>>> import polars as pl
>>> src = stream_source(pl.DataFrame({"user": ["a", "b"], "n": [1, 2]}))
>>> src.schema.field("user").type, [b.num_rows for b in src.read(0)]
(DataType(string), [2])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.sources.base import Source, conform

# view types (Polars exports its strings as string_view) as the plain types the rest of
# the build and every Parquet reader know
_PLAIN = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}


def has_arrow_stream(obj: Any) -> bool:
    """Whether ``obj`` can be read as an Arrow stream (a LazyFrame once collected)."""
    return hasattr(obj, "__arrow_c_stream__") or _is_lazy_frame(obj)


def _is_lazy_frame(obj: Any) -> bool:
    return (type(obj).__module__ or "").startswith("polars") and \
        type(obj).__name__ == "LazyFrame"


def _type_name(obj: Any) -> str:
    top = (type(obj).__module__ or "").split(".")[0]
    return f"{top}.{type(obj).__name__}" if top and top != "builtins" else type(obj).__name__


@dataclass
class StreamSource(Source):
    """One Arrow stream, read once in the main process."""

    reader: pa.RecordBatchReader | None = None
    first: pa.RecordBatch | None = None  # read ahead to check the stream is not empty

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        if self.reader is None or self.first is None:
            raise SourceError(f"{self.description['type']}: an Arrow stream can be read "
                              "only once")
        reader, first = self.reader, self.first
        self.reader = self.first = None
        row = first.num_rows
        yield conform(first, self.schema, f"{self.description['type']} rows from 0")
        for batch in reader:
            if batch.num_rows:
                yield conform(batch, self.schema, f"{self.description['type']} rows from {row}")
                row += batch.num_rows

    def location(self, unit: int, row: int) -> str:
        return f"row {row} of the {self.description['type']}"


def stream_source(obj: Any) -> StreamSource:
    """``obj`` (anything with ``__arrow_c_stream__``, or a Polars LazyFrame) as a source."""
    name = _type_name(obj)
    if _is_lazy_frame(obj):
        obj = obj.collect()
    try:
        reader = pa.RecordBatchReader.from_stream(obj)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise SettingError(f"cannot read the {name} as a stream of Arrow record batches "
                           f"({e}); pass a table-like object (rows with named columns)") from e
    first = next((b for b in reader if b.num_rows), None)
    if first is None:
        raise SourceError(f"the input {name} has no rows")
    schema = pa.schema([f.with_type(_PLAIN.get(f.type, f.type)) for f in reader.schema],
                       metadata=reader.schema.metadata)
    height = getattr(obj, "height", None)  # a Polars DataFrame knows its rows
    return StreamSource(
        description={"kind": "arrow-stream", "type": name},
        num_units=1,
        schema=schema,
        estimated_rows=height if isinstance(height, int) else None,
        parallel=False,
        reader=reader,
        first=first,
    )
