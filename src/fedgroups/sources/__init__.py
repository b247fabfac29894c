"""Sources: every kind of base dataset becomes work units of Arrow record batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN
from fedgroups.sources.base import Source

RESERVED_COLUMNS = (KEY_COLUMN, ORDINAL_COLUMN)
KEPT_METADATA = (b"huggingface",)


def make_source(source: Any, *, format: str | None = None, split: str | None = None,
                encoding_errors: str = "strict") -> Source:
    """Turn what the user passed (a path, a spec, a table, a datasets object, an iterable)
    into a Source. Its columns may not use the names the format reserves."""
    src = _make_source(source, format=format, split=split, encoding_errors=encoding_errors)
    src.schema = kept_metadata(src.schema)
    taken = [n for n in src.schema.names if n in RESERVED_COLUMNS]
    if taken:
        raise SourceError(
            f"{src.where()}: "
            f"column {taken[0]!r} has a name fedgroups reserves ({', '.join(RESERVED_COLUMNS)}); "
            "rename or drop it before building (a grouped dataset's own shards carry "
            f"{KEY_COLUMN!r}: drop it to group them again)")
    return src


def kept_metadata(schema: pa.Schema) -> pa.Schema:
    """The schema with only the metadata that stays true of the built shards: Hugging
    Face ``datasets`` features (``Image``, ``ClassLabel``, … under the ``huggingface``
    key, kept as ``datasets`` writes them). Other keys (pandas' index description, a
    writer's own notes) describe the input files, not the shards, and are dropped."""
    meta = {k: v for k, v in (schema.metadata or {}).items() if k in KEPT_METADATA}
    return schema.with_metadata(meta) if meta else schema.remove_metadata()


def _make_source(source: Any, *, format: str | None, split: str | None,
                 encoding_errors: str) -> Source:
    if isinstance(source, Source):
        return source
    if isinstance(source, str):
        if source == "stdlib:" or source == "stdlib":
            from fedgroups.sources.stdlib import stdlib_source
            return stdlib_source()
        if source.startswith("hf:") and not source.startswith("hf://"):  # hf:// is a file URL
            from fedgroups.sources.huggingface import hf_source
            return hf_source(source, split)
        if source.startswith("tfds:"):
            from fedgroups.sources import tfds
            return tfds.tfds_source(source, split)
        from fedgroups.sources.files import file_source
        return file_source(source, format, encoding_errors)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, str) for s in source):
        from fedgroups.sources.files import file_source
        return file_source(list(source), format, encoding_errors)
    if isinstance(source, pa.Table):
        from fedgroups.sources.memory import table_source
        return table_source(source)
    if isinstance(source, pa.RecordBatch):
        from fedgroups.sources.memory import table_source
        return table_source(pa.Table.from_batches([source]))
    mod = type(source).__module__ or ""
    if mod.startswith("pandas") and type(source).__name__ == "DataFrame":
        from fedgroups.sources.memory import table_source
        # a non-default index is kept as a column; pandas' own schema metadata is dropped
        return table_source(pa.Table.from_pandas(source).replace_schema_metadata(None))
    if mod.startswith("datasets"):
        from fedgroups.sources.huggingface import hf_object_source
        return hf_object_source(source)
    from fedgroups.sources.arrow_stream import has_arrow_stream
    if has_arrow_stream(source):  # Polars, DuckDB, a RecordBatchReader, ... (no copy)
        from fedgroups.sources.arrow_stream import stream_source
        return stream_source(source)
    if isinstance(source, Iterable) and not isinstance(source, (bytes, dict)):
        from fedgroups.sources.memory import iterable_source
        return iterable_source(source)
    raise SettingError(
        f"cannot read a source of type {type(source).__name__}; pass a path or glob, "
        "'hf:NAME[:CONFIG]', 'stdlib:', a pyarrow Table, a pandas DataFrame, a datasets object, "
        "an object with __arrow_c_stream__ (Polars, DuckDB, a pyarrow RecordBatchReader) "
        "or an iterable of dicts"
    )


__all__ = ["Source", "make_source"]
