"""What a recipe is, and the source-side transform that streams its preprocessing.

A recipe names a base dataset, a key and a preprocessing step. ``build_args`` turns it into
exactly what ``fg.build`` takes — ``(source, key, build_kwargs)`` — so the CLI
(``fedgroups build --recipe NAME OUT``) and Python (``fg.recipes.NAME(out)``) build the same
thing. Every recipe accepts ``source=`` to run its parsing and keying on local data in the
base dataset's schema instead of the hub (that is how the tests run, offline).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.keys.functions import KeyFunction
from fedgroups.sources import Source, make_source

BatchTransform = Callable[[pa.RecordBatch], pa.RecordBatch]
# Input rows per transform call: keeps the output of a splitting transform (a batch of
# books → their paragraphs) bounded however large the upstream batches are.
TRANSFORM_ROWS = 256


@dataclass
class TransformSource(Source):
    """Another source with a batch → batch transform applied as it streams."""

    inner: Source | None = None
    transform: BatchTransform | None = None
    rows_per_call: int = TRANSFORM_ROWS

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        assert self.inner is not None and self.transform is not None
        for batch in self.inner.read(unit):
            for start in range(0, batch.num_rows, self.rows_per_call):
                out = self.transform(batch.slice(start, self.rows_per_call))
                if out.num_rows:
                    yield out

    def location(self, unit: int, row: int) -> str:
        # Rows are counted after the transform, so name the unit, not a row of the input.
        what = self.description.get("spec") or self.description.get("kind", "input")
        return f"{what} unit {unit}, example {row} after {self.description['transform']}"


def transformed(source: Source, transform: BatchTransform, schema: pa.Schema,
                what: str, rows_per_call: int = TRANSFORM_ROWS) -> TransformSource:
    """Wrap ``source`` so that every batch passes through ``transform`` (output ``schema``)."""
    return TransformSource(
        description={**source.description, "transform": what},
        num_units=source.num_units, schema=schema,
        estimated_bytes=source.estimated_bytes, estimated_rows=None,
        parallel=source.parallel, inner=source, transform=transform,
        rows_per_call=rows_per_call)


def require_columns(source: Source, columns: tuple[str, ...], recipe: str) -> None:
    missing = [c for c in columns if c not in source.schema.names]
    if missing:
        raise SourceError(
            f"recipe {recipe!r}: the input has no column(s) {missing}; it needs "
            f"{list(columns)} (the base dataset's schema); columns are {source.schema.names}")


def load_hub(name: str, config: str | None, split: str, streaming: bool) -> Any:
    """``datasets.load_dataset`` with an error that says what was asked for and how to fix it."""
    try:
        import datasets
    except ImportError as e:
        raise SettingError("recipes load from the Hugging Face hub with the `datasets` "
                           "package: pip install 'fedgroups[hf]'") from e
    try:
        return datasets.load_dataset(name, config, split=split, streaming=streaming)
    except Exception as e:  # datasets raises many kinds; all mean "cannot load this"
        raise SourceError(
            f"cannot load {name!r} (config {config!r}, split {split!r}, streaming={streaming}) "
            f"from the Hugging Face hub: {type(e).__name__}: {e}. Check the network and the "
            "name, or pass source= with local files in the same schema") from e


@dataclass(frozen=True)
class Recipe:
    """A named grouped dataset: base dataset + preprocessing + key.

    ``prepare(split=..., **options)`` returns ``(source, key, build_kwargs)``; ``options``
    are the recipe's own (``config``, ``streaming``, ``unit``, ``source`` …), listed in
    ``options``.
    """

    name: str
    description: str
    base: str  # where the data comes from
    group: str  # what a group is
    prepare: Callable[..., tuple[Any, KeyFunction | str, dict[str, Any]]] = field(repr=False)
    options: Mapping[str, str] = field(default_factory=dict)
    expected: str = ""  # expected statistics of the full build, from the literature

    def build_args(self, split: str | None = None, **options: Any,
                   ) -> tuple[Any, KeyFunction | str, dict[str, Any]]:
        """``(source, key, build_kwargs)`` for ``fg.build(source, key, out, **build_kwargs)``."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise SettingError(f"recipe {self.name!r} has no option(s) {unknown}; its options "
                               f"are: {', '.join(self.options) or 'none'}")
        return self.prepare(split=split or "train",
                            **{k: _coerce(k, v) for k, v in options.items()})


_BOOL_OPTIONS = ("streaming", "download")


def _coerce(name: str, value: Any) -> Any:
    """Options from the command line arrive as strings; make the yes/no ones booleans."""
    if name in _BOOL_OPTIONS and isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"recipe option {name}={value!r}: use true or false")
    return value


def local_or_hub(source: Any, name: str, config: str | None, split: str,
                 streaming: bool) -> Source:
    """The user's local data when given, else the base dataset from the hub."""
    if source is not None:
        return make_source(source)
    src = make_source(load_hub(name, config, split, streaming))
    src.description.update({"spec": f"hf:{name}" + (f":{config}" if config else ""),
                            "split": split, "streaming": streaming})
    return src
