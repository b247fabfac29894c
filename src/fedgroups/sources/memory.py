"""In-memory sources: a pyarrow Table, or any iterable of dicts."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from fedgroups.errors import SourceError
from fedgroups.sources.base import BATCH_ROWS, Source, conform

_UNIT_ROWS = 1 << 20


@dataclass
class TableSource(Source):
    """A pyarrow Table, read as units of consecutive rows (parallel-safe under fork)."""

    table: pa.Table = field(default_factory=lambda: pa.table({}))

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        part = self.table.slice(unit * _UNIT_ROWS, _UNIT_ROWS)
        yield from part.to_batches(max_chunksize=BATCH_ROWS)

    def location(self, unit: int, row: int) -> str:
        return f"table row {unit * _UNIT_ROWS + row}"


def table_source(table: pa.Table) -> TableSource:
    if table.num_rows == 0:
        raise SourceError("the input table has no rows")
    return TableSource(
        description={"kind": "arrow-table", "rows": table.num_rows},
        num_units=max(1, -(-table.num_rows // _UNIT_ROWS)),
        schema=table.schema,
        estimated_bytes=table.nbytes,
        estimated_rows=table.num_rows,
        table=table,
    )


@dataclass
class IterableSource(Source):
    """Any iterable of dicts; read once, in order, in the main process."""

    first: pa.RecordBatch | None = None
    rest: Iterator[dict[str, Any]] | None = None

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        if self.first is None or self.rest is None:
            raise SourceError("an iterable source can be read only once")
        yield self.first
        row = self.first.num_rows
        self.first = None
        while True:
            chunk = list(itertools.islice(self.rest, BATCH_ROWS))
            if not chunk:
                return
            yield _to_batch(chunk, self.schema, row)
            row += len(chunk)

    def location(self, unit: int, row: int) -> str:
        return f"example {row} of the iterable"


def _to_batch(rows: list[Any], schema: pa.Schema | None, start: int) -> pa.RecordBatch:
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise SourceError(
                f"example {start + i} of the iterable is a {type(r).__name__}, not a dict"
            )
    try:
        batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SourceError(
            f"examples {start}..{start + len(rows) - 1} of the iterable do not fit the "
            f"schema of the first examples ({e})"
        ) from e
    if schema is not None:
        keys = set().union(*(r.keys() for r in rows))
        extra = sorted(keys - set(schema.names))
        if extra:
            raise SourceError(
                f"examples {start}..{start + len(rows) - 1} of the iterable have fields "
                f"{extra} that the first examples do not; give every example the same fields"
            )
        return conform(batch, schema, f"examples from {start}")
    return batch


def iterable_source(items: Iterable[dict[str, Any]]) -> IterableSource:
    it = iter(items)
    head = list(itertools.islice(it, BATCH_ROWS))
    if not head:
        raise SourceError("the input is empty: the iterable yielded no examples")
    first = _to_batch(head, None, 0)
    size = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    return IterableSource(
        description={"kind": "python-iterable", "type": type(items).__name__},
        num_units=1,
        schema=first.schema,
        estimated_rows=size,
        estimated_bytes=(first.nbytes * size // len(head)) if size else None,
        parallel=False,
        first=first,
        rest=it,
    )
