"""Sources: every kind of base dataset becomes work units of Arrow record batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.sources.base import Source


def make_source(source: Any, *, format: str | None = None, split: str | None = None) -> Source:
    """Turn what the user passed (a path, a spec, a table, a datasets object, an iterable)
    into a Source."""
    if isinstance(source, Source):
        return source
    if isinstance(source, str):
        if source == "stdlib:" or source == "stdlib":
            from fedgroups.sources.stdlib import stdlib_source
            return stdlib_source()
        if source.startswith("hf:"):
            from fedgroups.sources.huggingface import hf_source
            return hf_source(source, split)
        if source.startswith("tfds:"):
            from fedgroups.sources import tfds
            return tfds.tfds_source(source, split)
        from fedgroups.sources.files import file_source
        return file_source(source, format)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, str) for s in source):
        from fedgroups.sources.files import file_source
        return file_source(list(source), format)
    if isinstance(source, pa.Table):
        from fedgroups.sources.memory import table_source
        return table_source(source)
    if isinstance(source, pa.RecordBatch):
        from fedgroups.sources.memory import table_source
        return table_source(pa.Table.from_batches([source]))
    mod = type(source).__module__ or ""
    if mod.startswith("datasets"):
        from fedgroups.sources.huggingface import hf_object_source
        return hf_object_source(source)
    if isinstance(source, Iterable) and not isinstance(source, (bytes, dict)):
        from fedgroups.sources.memory import iterable_source
        return iterable_source(source)
    raise SettingError(
        f"cannot read a source of type {type(source).__name__}; pass a path or glob, "
        "'hf:NAME[:CONFIG]', 'stdlib:', a pyarrow Table, a datasets object or an iterable of dicts"
    )


__all__ = ["Source", "make_source"]
