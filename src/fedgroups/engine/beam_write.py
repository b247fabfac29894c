"""``WriteGrouped``: the Beam engine as a PTransform over a PCollection of dicts.

    examples | fedgroups.beam.WriteGrouped(out, key="field:user")

A local ``out`` (or one on a shared mount) is built in a staging directory beside it and
renamed into place by the last step. A remote ``out`` (``gs://``, ``s3://``, … through
fsspec) is written in place with the manifest uploaded last: until then it is not a dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from fedgroups.engine.beam import (
    BeamSettings,
    GroupAndWrite,
    Layout,
    ReadAndKey,
    _KeyAndCut,
    counters,
    summarize,
)
from fedgroups.engine.beam_arrow import (
    SORT_BUDGET,
    MapSummary,
    content_ordinals,
    default_num_shards,
)
from fedgroups.engine.core import MapResult
from fedgroups.engine.plan import parse_bytes
from fedgroups.errors import FedGroupsError, OutputExistsError, SettingError, SourceError
from fedgroups.format.finish import PartitionResult, finish
from fedgroups.format.group_columns import parse_group_columns
from fedgroups.format.layout import CARD_FILE
from fedgroups.format.spec import INDEX_FILE, MANIFEST_FILE
from fedgroups.format.writer import SHARD_BYTES
from fedgroups.keys.base import KeyFunction
from fedgroups.keys.registry import parse_key
from fedgroups.sources.base import Source
from fedgroups.storage import filesystem, is_remote, upload


class _PCollectionInput(Source):
    """Stands in for a Source when rows come from a PCollection (for error messages)."""

    def location(self, unit: int, row: int) -> str:
        return f"example {row} of a batch of the input PCollection"


class _KeyRows(_KeyAndCut):
    """Batches of dicts → Arrow → keys; the order within a group is by content hash."""

    def __init__(self, schema: pa.Schema | None, *args: Any) -> None:
        super().__init__(*args)
        self.schema = schema

    def process(self, rows: list[dict[str, Any]]) -> Iterator[tuple[int, bytes]]:
        try:
            batch = pa.RecordBatch.from_pylist(rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, AttributeError) as e:
            raise SourceError(
                f"a batch of {len(rows)} examples does not convert to Arrow "
                f"{'with the given schema ' if self.schema else ''}({e}); every example must "
                f"be a dict of columns, first one: {str(rows[0])[:200]}") from e
        result = MapResult()
        yield from self._key(batch, content_ordinals(rows), 0, 0, result)
        self._fold(result, schema=None if self.schema else batch.schema)


class Commit:
    """The last, singleton step: index and manifest (and for a local OUT, the rename).

    It runs on a worker, so nothing has to travel back to the driver: on a cluster a local
    OUT must be on storage every worker and the driver share; a remote OUT always is."""

    def __init__(self, layout: Layout, out: str, overwrite: bool, keyfn: KeyFunction,
                 settings: dict[str, Any], source: dict[str, Any] | None = None) -> None:
        self.layout, self.out, self.overwrite = layout, out, overwrite
        self.keyfn, self.settings = keyfn, settings
        self.source = source or {"kind": "beam-pcollection"}

    def __call__(self, results: list[PartitionResult], summary: MapSummary) -> dict[str, Any]:
        from fedgroups.format.publish import publish

        summary.check(self.keyfn.spec, str(self.source.get("spec") or self.source))
        args: dict[str, Any] = {
            "schema": self.layout.schema(summary), "key_description": self.keyfn.describe(),
            "source_description": self.source,
            "build_settings": self.settings, "text_column": self.layout.text(summary),
            "dropped": summary.dropped, "group_columns": self.layout.group_columns}
        if not is_remote(self.out):
            manifest = finish(self.layout.root, results, **args)
            publish(self.layout.root, self.out, self.overwrite)
            return manifest
        local = tempfile.mkdtemp(prefix="fedgroups-commit-")
        try:
            manifest = finish(local, results, **args)
            upload(os.path.join(local, INDEX_FILE), f"{self.out}/{INDEX_FILE}")
            upload(os.path.join(local, CARD_FILE), f"{self.out}/{CARD_FILE}")
            upload(os.path.join(local, MANIFEST_FILE), f"{self.out}/{MANIFEST_FILE}")
        finally:
            shutil.rmtree(local, ignore_errors=True)
        return manifest


def prepare_root(out: str, overwrite: bool) -> str:
    """Where shards go: a staging directory beside a local OUT, OUT itself when remote."""
    from fedgroups.format.publish import check_output, make_staging, remove_stale_staging
    if is_remote(out):
        _prepare_remote(out, overwrite)
        return out
    check_output(out, overwrite)
    remove_stale_staging(out)
    return make_staging(out)


def read_result_manifest(out: str) -> dict[str, Any]:
    """The manifest the Commit step wrote (local or remote OUT)."""
    if not is_remote(out):
        from fedgroups.format.manifest import read_manifest
        return read_manifest(out)
    import json
    with filesystem(out).open(f"{out}/{MANIFEST_FILE}", "r") as f:
        return json.load(f)


def _prepare_remote(out: str, overwrite: bool) -> None:
    fs = filesystem(out)
    manifest = f"{out}/{MANIFEST_FILE}"
    if fs.exists(manifest):
        if not overwrite:
            raise OutputExistsError(f"{out} already holds a grouped dataset; pass overwrite=True")
        # From here the old dataset no longer opens: its shards are about to be rewritten.
        fs.rm(manifest)


class WriteGrouped(beam.PTransform):
    """Group a PCollection of dicts by ``key`` and write a grouped dataset at ``out``.

    Outputs one element: the manifest, once the dataset is complete.

    Parameters
    ----------
    out : a local directory (built beside, renamed into place) or a ``gs://``/``s3://`` URL
        (written in place, manifest last; needs the fsspec filesystem on all workers).
    key : a KEYSPEC (``field:NAME``, ``url-host:FIELD``, ``hash:N:FIELD``, ``iid:N[:SEED]``)
        or a callable example → key.
    schema : the Arrow schema of the examples; inferred (and unified) when omitted.
    num_shards : partitions: reduce tasks and shard-file prefixes. About input bytes / 256MB.
    sort_budget : data a reduce worker sorts in memory before spilling runs to local disk.
    group_columns : columns constant within each group, recorded per group in the index.

    Within a group, rows are ordered by a hash of their content (a PCollection has no
    order); ``fg.build(..., engine="beam")`` keeps the source order instead.

    Examples
    --------
    >>> import apache_beam as beam, fedgroups as fg
    >>> rows = [{"user": "a", "text": "hi"}, {"user": "b", "text": "yo"}]
    >>> with beam.Pipeline() as p:  # doctest: +SKIP
    ...     _ = p | beam.Create(rows) | fg.beam.WriteGrouped("/tmp/out", key="field:user")
    """

    def __init__(
        self, out: str | os.PathLike[str], *, key: Any, schema: pa.Schema | None = None,
        text_column: str | None = "auto", on_missing_key: str = "error", num_shards: int = 32,
        sort_budget: str | int = SORT_BUDGET, shard_bytes: str | int = SHARD_BYTES,
        compression: str | None = "lz4", overwrite: bool = False,
        group_columns: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if on_missing_key not in ("error", "drop"):
            raise SettingError(f"on_missing_key {on_missing_key!r} is not one of: error, drop")
        out = os.fspath(out)
        self.out = out if is_remote(out) else os.path.abspath(out)
        self.keyfn = parse_key(key)
        self.group_columns = parse_group_columns(group_columns)
        self.schema = schema
        self.text_column = text_column
        self.on_missing_key = on_missing_key
        self.overwrite = overwrite
        self.settings = BeamSettings(
            num_shards=num_shards, sort_budget=parse_bytes(sort_budget, "sort_budget"),
            shard_bytes=parse_bytes(shard_bytes, "shard_bytes"), compression=compression)

    def expand(self, examples: beam.PCollection) -> beam.PCollection:
        root = prepare_root(self.out, self.overwrite)
        layout = Layout(root=root, key_spec=self.keyfn.spec, input_schema=self.schema,
                        text_column=self.text_column, group_columns=self.group_columns)
        source = _PCollectionInput(description={"kind": "beam-pcollection"}, num_units=0,
                                   schema=self.schema or pa.schema([]))
        fn = _KeyRows(self.schema, source, self.keyfn, self.settings, self.on_missing_key)
        outputs = (examples
                   | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=8192)
                   | "Key" >> beam.ParDo(fn).with_outputs("stats", main="chunks"))
        summary = summarize(outputs.stats)
        results = outputs.chunks | "Write" >> GroupAndWrite(layout, self.settings, summary)
        settings = {"engine": "beam", "transform": "WriteGrouped",
                    "num_partitions": self.settings.num_shards,
                    "sort_budget": self.settings.sort_budget,
                    "shard_bytes": self.settings.shard_bytes,
                    "compression": self.settings.compression,
                    "on_missing_key": self.on_missing_key}
        commit = Commit(layout, self.out, self.overwrite, self.keyfn, settings)
        return (results
                | "Collect" >> beam.combiners.ToList()
                | "Commit" >> beam.Map(commit, summary=beam.pvalue.AsSingleton(summary)))


def _unwrap(error: BaseException) -> BaseException:
    """The user-facing error inside a runner's wrapper, if there is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, FedGroupsError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def run_beam(
    src: Source, keyfn: KeyFunction, *, out: str, overwrite: bool, text_column: str | None,
    on_missing_key: str, num_shards: int | None, pipeline_options: list[str],
    group_columns: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build ``out`` on the runner the options name; return (manifest, statistics).

    The pipeline's last step writes the index and then the manifest (and, for a local OUT,
    renames the staging directory into place), so a failed or cancelled job leaves nothing
    that opens as a dataset."""
    options = PipelineOptions(pipeline_options)
    settings = BeamSettings.from_options(options, num_shards or default_num_shards(
        src.estimated_bytes))
    root = prepare_root(out, overwrite)
    layout = Layout(root=root, key_spec=keyfn.spec, input_schema=src.schema,
                    text_column=text_column, group_columns=group_columns)
    build_settings = {"engine": "beam",
                      "runner": options.view_as(StandardOptions).runner or "DirectRunner",
                      "num_partitions": settings.num_shards, **{
                          k: v for k, v in asdict(settings).items() if k != "num_shards"},
                      "on_missing_key": on_missing_key}
    pipeline = beam.Pipeline(options=options)
    outputs = pipeline | "Read" >> ReadAndKey(src, keyfn, settings, on_missing_key)
    summary = summarize(outputs.stats)
    results = outputs.chunks | "Write" >> GroupAndWrite(layout, settings, summary)
    commit = Commit(layout, out, overwrite, keyfn, build_settings, source=src.description)
    _ = (results | "Collect" >> beam.combiners.ToList()
         | "Commit" >> beam.Map(commit, summary=beam.pvalue.AsSingleton(summary)))
    try:
        run = pipeline.run()
        run.wait_until_finish()
    except Exception as e:  # runners wrap worker errors; surface the user's error as is
        if root != out:
            shutil.rmtree(root, ignore_errors=True)
        inner = _unwrap(e)
        if inner is not e:
            raise inner from e
        raise
    manifest = read_result_manifest(out)
    totals = manifest["totals"]
    stats: dict[str, Any] = {"rows_in": totals["examples"] + totals["dropped_examples"],
                             "dropped": totals["dropped_examples"], **counters(run)}
    return manifest, stats
