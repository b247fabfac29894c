"""``tfds:NAME[/CONFIG][:VERSION]`` — a prepared TensorFlow Datasets split.

Each unit is one of the split's shard files (an absolute, file-aligned slice), so the local
engine's processes and the Beam engine's workers read the split in parallel, one file each,
and an example's (unit, row) is the same on both engines. TensorFlow and
``tensorflow-datasets`` are optional: ``pip install 'fedgroups[tfds]'``.

The split must be prepared first (``tfds build NAME``; datasets that TFDS itself prepares
with Beam, such as ``c4``, take ``--beam_pipeline_options``); nothing is downloaded here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.sources.base import BATCH_ROWS, Source, conform


def _tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise SettingError(
            "tfds: sources need TensorFlow Datasets: pip install tensorflow tensorflow-datasets "
            "(or use the dataset's files, or its Hugging Face copy with hf:NAME)") from e
    return tfds


def _column(values: np.ndarray, text: bool) -> pa.Array:
    """One batched TFDS feature → an Arrow column (bytes of Text features decoded)."""
    if values.dtype == object:  # tf.string: bytes
        if text:
            return pa.array([v.decode("utf-8") for v in values], pa.string())
        return pa.array(list(values), pa.binary())
    if values.ndim == 1:
        return pa.array(values)
    return pa.array(list(values.reshape(len(values), -1)))  # flattened list per example


@dataclass
class TfdsSource(Source):
    name: str = ""
    split: str = "train"
    data_dir: str | None = None
    bounds: list[int] = field(default_factory=list)  # example offsets of the shard files
    text_features: list[str] = field(default_factory=list)

    def _builder(self) -> Any:
        return _tfds().builder(self.name, data_dir=self.data_dir)

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        tfds = _tfds()
        lo, hi = self.bounds[unit], self.bounds[unit + 1]
        ds = self._builder().as_dataset(split=f"{self.split}[{lo}:{hi}]", shuffle_files=False)
        for batch in tfds.as_numpy(ds.batch(BATCH_ROWS)):
            if not isinstance(batch, dict):
                raise SourceError(f"{self.location(unit, 0)}: examples are not feature dicts")
            cols = {k: _column(np.asarray(v), k in self.text_features) for k, v in batch.items()}
            out = pa.RecordBatch.from_pydict(cols)
            yield conform(out, self.schema, self.location(unit, 0)) if self.schema.names else out

    def location(self, unit: int, row: int) -> str:
        return f"tfds:{self.name} split {self.split} example {self.bounds[unit] + row}"


def tfds_source(spec: str, split: str | None) -> TfdsSource:
    tfds = _tfds()
    name = spec[len("tfds:"):]
    if not name:
        raise SettingError(f"{spec!r}: use tfds:NAME, tfds:NAME/CONFIG or tfds:NAME/CONFIG:VERSION")
    split = split or "train"
    data_dir = os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # TFDS raises several kinds for unknown names
        raise SourceError(f"{spec}: TFDS does not know this dataset ({e})") from e
    info = builder.info
    if split not in info.splits:
        raise SourceError(f"{spec}: no split {split!r}; splits are {list(info.splits)} (or the "
                          f"dataset is not prepared: run `tfds build {name}` first)")
    lengths = list(info.splits[split].shard_lengths)
    bounds = [0, *np.cumsum(lengths).tolist()]
    text = [k for k, f in info.features.items() if isinstance(f, tfds.features.Text)]
    src = TfdsSource(
        description={"kind": "tfds", "spec": spec, "split": split,
                     "version": str(info.version), "shards": len(lengths)},
        num_units=len(lengths), schema=pa.schema([]), estimated_rows=bounds[-1],
        estimated_bytes=int(getattr(info, "dataset_size", 0) or 0) or None,
        name=name, split=split, data_dir=data_dir, bounds=bounds, text_features=text,
    )
    first = next(iter(src.read(0)), None) if lengths else None
    if first is None:
        raise SourceError(f"{spec}: split {split!r} has no examples")
    src.schema = first.schema
    return src
