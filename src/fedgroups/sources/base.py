"""What every source gives the build engine: work units that each yield Arrow record batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fedgroups.errors import SourceError

BATCH_ROWS = 8_192


@dataclass
class Source:
    """A base dataset split into independently readable units (files, row ranges).

    ``read(i)`` yields the record batches of unit ``i`` in order; an example's position
    (unit, row within unit) is its identity for ordering and for seeded keys.
    ``parallel`` says whether units may be read in forked worker processes.
    """

    description: dict[str, Any]
    num_units: int
    schema: pa.Schema
    estimated_bytes: int | None = None  # uncompressed, for planning partitions
    estimated_rows: int | None = None  # for the progress bar's ETA
    parallel: bool = True

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def location(self, unit: int, row: int) -> str:
        return f"unit {unit}, row {row}"

    def where(self) -> str:
        """The input in a few words, for messages: the spec or path the user gave, else
        what kind of object it is (never the whole description)."""
        d = self.description
        spec = d.get("spec")
        if isinstance(spec, str):
            return spec
        paths = d.get("paths")
        if paths:
            more = d.get("num_files", len(paths)) - 1
            return str(paths[0]) + (f" (and {more} more files)" if more > 0 else "")
        name = d.get("name") or d.get("type") or d.get("kind") or "the input"
        return f"the {name}" + (f" ({d['rows']:,} rows)" if isinstance(d.get("rows"), int)
                                else "")

    def summary(self) -> dict[str, Any]:
        """What reading found, to add to the manifest's source description once the
        build has read everything (e.g. replaced invalid UTF-8); empty by default."""
        return {}


def conform(batch: pa.RecordBatch, schema: pa.Schema, where: str) -> pa.RecordBatch:
    """Cast a batch to the source's schema, or say which column disagrees."""
    if batch.schema.equals(schema):
        return batch
    if set(batch.schema.names) != set(schema.names):
        missing = sorted(set(schema.names) - set(batch.schema.names))
        extra = sorted(set(batch.schema.names) - set(schema.names))
        raise SourceError(
            f"{where}: columns differ from the rest of the input "
            f"(missing: {missing or 'none'}, unexpected: {extra or 'none'}); "
            "make every file have the same columns"
        )
    try:
        return batch.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SourceError(f"{where}: cannot convert to the input's schema {schema}: {e}") from e


def unify(schemas: list[tuple[str, pa.Schema]]) -> pa.Schema:
    """One schema for all inputs; numeric widening is allowed, other disagreements are errors."""
    first_where, first = schemas[0]
    for where, s in schemas[1:]:
        if set(s.names) != set(first.names):
            raise SourceError(
                f"schemas disagree: {first_where} has columns {first.names} but {where} has "
                f"{s.names}; make every file have the same columns"
            )
    try:
        return pa.unify_schemas([s for _, s in schemas], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SourceError(f"schemas of the input files disagree and cannot be unified: {e}") from e
