"""Groups as Hugging Face ``datasets.Dataset`` objects (one client, as Flower Datasets
hands out a partition).

Both functions read the rows into memory (Arrow, no copy into Python objects). For the
whole dataset as one ``Dataset`` use ``datasets.load_dataset(OUT)`` instead: it reads the
shard files at the root (docs/format.md, "Reading with other tools").

>>> import fedgroups as fg
>>> rows = [{"user": u, "text": t} for u, t in [("a", "hi"), ("b", "yo"), ("a", "ok")]]
>>> ds = fg.open(fg.build(rows, "field:user", "/tmp/fg-hf-doctest", overwrite=True,
...                       progress=False).path)
>>> list(ds.group("a").to_hf()["text"])
['hi', 'ok']
>>> list(ds.to_hf(["b", "a"])["__group__"])
['b', 'a', 'a']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import pyarrow as pa

from fedgroups.format.spec import KEY_COLUMN


class Group(Protocol):
    """What is used of a ``fedgroups.reader`` Group (the reader calls this module, not the
    other way round)."""

    key: Any
    schema: pa.Schema

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table: ...


class GroupedDataset(Protocol):
    """What is used of a ``fedgroups.reader`` GroupedDataset."""

    schema: pa.Schema
    index: pa.Table

    def group(self, key: Any) -> Group: ...

    def __iter__(self) -> Iterator[Group]: ...


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise ImportError("to_hf needs the Hugging Face `datasets` package: "
                          "pip install 'fedgroups[hf]'") from e
    return datasets


HF_METADATA = b"huggingface"  # where ``datasets`` keeps its Features in an Arrow schema


def _with_features(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` carrying the dataset's Hugging Face Features (``ClassLabel``, ``Image``,
    ...), when the source had them: ``datasets`` reads them from the schema metadata (and
    infers the columns they do not name, such as the group key)."""
    hf = (schema.metadata or {}).get(HF_METADATA)
    if hf is None:
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}), HF_METADATA: hf})


def group_to_hf(group: Group, columns: Sequence[str] | None = None) -> Any:
    """One group's examples as a ``datasets.Dataset`` (its columns, without the key)."""
    return _datasets().Dataset(_with_features(group.to_arrow(columns), group.schema))


def groups_to_hf(ds: GroupedDataset, keys: Sequence[Any] | None = None,
                 columns: Sequence[str] | None = None) -> Any:
    """The examples of the groups ``keys`` (default: every group of ``ds``), group after
    group in the order given, as one ``datasets.Dataset`` whose first column is the group
    key (``__group__``). A key that is not there is a KeyError naming it."""
    lib = _datasets()
    groups = [ds.group(k) for k in keys] if keys is not None else list(ds)
    names = list(columns) if columns is not None else list(ds.schema.names)
    fields = [pa.field(KEY_COLUMN, ds.index.schema.field("key").type)] + \
        [ds.schema.field(c) for c in names]
    tables = []
    for g in groups:
        t = g.to_arrow(names)
        key = pa.array([g.key] * t.num_rows, fields[0].type)
        tables.append(t.add_column(0, KEY_COLUMN, key))
    table = pa.concat_tables(tables) if tables else pa.schema(fields).empty_table()
    return lib.Dataset(_with_features(table, ds.schema))
