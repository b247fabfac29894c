"""Hugging Face ``datasets``: ``hf:NAME[:CONFIG]`` specs, Dataset and IterableDataset objects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.sources.base import BATCH_ROWS, Source

_UNIT_ROWS = 1 << 20


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise SettingError(
            "Hugging Face sources need the `datasets` package: pip install 'fedgroups[hf]'"
        ) from e
    return datasets


@dataclass
class HFDatasetSource(Source):
    dataset: Any = None

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        ds = self.dataset.with_format("arrow")
        start = unit * _UNIT_ROWS
        stop = min(start + _UNIT_ROWS, len(self.dataset))
        for lo in range(start, stop, BATCH_ROWS):
            table = ds[lo:min(lo + BATCH_ROWS, stop)]
            yield from table.to_batches()

    def location(self, unit: int, row: int) -> str:
        return f"{self.description.get('name', 'dataset')} row {unit * _UNIT_ROWS + row}"


@dataclass
class HFIterableSource(Source):
    dataset: Any = None

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        for chunk in self.dataset.iter(batch_size=BATCH_ROWS):
            yield pa.RecordBatch.from_pydict(chunk).cast(self.schema) if self.schema else \
                pa.RecordBatch.from_pydict(chunk)

    def location(self, unit: int, row: int) -> str:
        return f"{self.description.get('name', 'iterable dataset')} example {row}"


def hf_object_source(obj: Any, name: str = "datasets object") -> Source:
    datasets = _datasets()
    if isinstance(obj, datasets.DatasetDict):
        raise SettingError(
            f"{name} is a DatasetDict with splits {list(obj)}; pick one (split='train')"
        )
    if isinstance(obj, datasets.Dataset):
        if len(obj) == 0:
            raise SourceError(f"{name} has no rows")
        return HFDatasetSource(
            description={"kind": "huggingface", "name": name, "rows": len(obj),
                         "fingerprint": getattr(obj, "_fingerprint", None)},
            num_units=max(1, -(-len(obj) // _UNIT_ROWS)),
            schema=obj.features.arrow_schema,
            estimated_bytes=obj.data.nbytes,
            estimated_rows=len(obj),
            dataset=obj,
        )
    if isinstance(obj, datasets.IterableDataset):
        schema = obj.features.arrow_schema if obj.features is not None else None
        if schema is None:
            first = next(iter(obj.iter(batch_size=BATCH_ROWS)), None)
            if first is None:
                raise SourceError(f"{name} is empty")
            schema = pa.RecordBatch.from_pydict(first).schema
        return HFIterableSource(
            description={"kind": "huggingface-iterable", "name": name},
            num_units=1, schema=schema, parallel=False, dataset=obj,
        )
    raise SettingError(f"{name}: not a datasets.Dataset or IterableDataset")


def hf_source(spec: str, split: str | None) -> Source:
    """``hf:NAME[:CONFIG]``: load through ``datasets`` (offline from its cache or local files)."""
    datasets = _datasets()
    rest = spec[len("hf:"):]
    name, _, config = rest.partition(":")
    if not name:
        raise SettingError(f"{spec!r}: use hf:NAME or hf:NAME:CONFIG")
    try:
        obj = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as e:  # datasets raises many kinds; all mean "cannot load this"
        raise SourceError(
            f"{spec}: cannot load with datasets.load_dataset({name!r}, {config or None!r}, "
            f"split={split or 'train'!r}): {type(e).__name__}: {e}. Offline, only datasets in the "
            "local cache or local paths work."
        ) from e
    src = hf_object_source(obj, name=spec)
    src.description.update({"spec": spec, "split": split or "train"})
    return src
