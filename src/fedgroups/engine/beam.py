"""The Beam engine: the local engine's format, written by an Apache Beam pipeline.

One read of the input and one shuffle::

    Create(unit ids) | Reshuffle            spread the source's units over workers
      | ParDo(ReadUnits)                     read + key a unit; cut rows into chunks
          ├─ (partition, Arrow IPC chunk)    thousands of examples per element
          └─ MapSummary ─► CombineGlobally ─► summary (side input: key type, counts)
      | GroupByKey                           the one shuffle: one pass of the data
      | ParDo(WritePartitions, summary)      sort within a budget (spill + merge), write
      |                                      shards; group statistics come from the writer
      | ToList | Map(commit, summary)        a singleton step: index, then manifest, last

This module holds the pipeline's transforms; ``beam_write.py`` runs them: ``run_beam``
serves ``fg.build(..., engine="beam")`` and ``WriteGrouped`` is the same pipeline as a
PTransform over a PCollection of dicts (``fedgroups.beam.WriteGrouped``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from fedgroups.engine.beam_arrow import (
    CHUNK_BYTES,
    SORT_BUDGET,
    ChunkCutter,
    MapSummary,
    decode_chunk,
    encode_chunk,
    write_partition,
)
from fedgroups.engine.core import (
    MapResult,
    choose_text_column,
    key_batch,
    output_schema,
    unit_ordinals,
)
from fedgroups.engine.plan import parse_bytes
from fedgroups.errors import SettingError
from fedgroups.format.finish import PartitionResult
from fedgroups.format.group_columns import group_fields
from fedgroups.format.spec import new_build_id, with_build_id
from fedgroups.format.writer import SHARD_BYTES
from fedgroups.keys.base import KeyFunction
from fedgroups.sources.base import Source
from fedgroups.storage import is_remote, upload

_NS = "fedgroups"
_HANDOFF = "_beam_handoff"


class FedGroupsOptions(PipelineOptions):
    """fedgroups' own pipeline options, passed with the Beam ones (``--runner=...``)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--fedgroups_sort_budget", default=f"{SORT_BUDGET >> 20}MB",
            help="data one reduce worker sorts in memory before spilling a sorted run to "
                 "local disk (e.g. 256MB); keep it well under a worker's memory")
        parser.add_argument(
            "--fedgroups_shard_bytes", default=f"{SHARD_BYTES >> 20}MB",
            help="uncompressed bytes per shard file; a larger group is split into parts")
        parser.add_argument(
            "--fedgroups_shuffle_compression", default="lz4", choices=["none", "lz4", "zstd"],
            help="compression of the Arrow chunks that cross the shuffle")


@dataclass(frozen=True, kw_only=True)
class BeamSettings:
    num_shards: int  # partitions: reduce tasks, and the first part of every shard name
    sort_budget: int = SORT_BUDGET
    shard_bytes: int = SHARD_BYTES
    compression: str | None = "lz4"

    @property
    def chunk_bytes(self) -> int:
        """Shuffle elements stay well inside the reduce budget (a chunk is decoded whole)."""
        return max(1 << 10, min(CHUNK_BYTES, self.sort_budget // 8))

    def __post_init__(self) -> None:
        if self.num_shards < 1:
            raise SettingError(f"num_shards must be at least 1, got {self.num_shards}")
        if self.compression not in (None, "lz4", "zstd"):
            raise SettingError(f"shuffle compression {self.compression!r} is not lz4, zstd or none")

    @classmethod
    def from_options(cls, options: PipelineOptions, num_shards: int) -> BeamSettings:
        o = options.view_as(FedGroupsOptions)
        comp = o.fedgroups_shuffle_compression
        return cls(num_shards=num_shards,
                   sort_budget=parse_bytes(o.fedgroups_sort_budget, "--fedgroups_sort_budget"),
                   shard_bytes=parse_bytes(o.fedgroups_shard_bytes, "--fedgroups_shard_bytes"),
                   compression=None if comp == "none" else comp)


# ---- map side ------------------------------------------------------------------------------

class _KeyAndCut(beam.DoFn):
    """Base of the map DoFns: key batches, cut them into chunks, count what was seen.

    Chunks are cut across all elements of a bundle and emitted at its end, so small units
    do not make small shuffle elements; memory stays within the cutter's buffer.
    """

    def __init__(self, source: Source, keyfn: KeyFunction, settings: BeamSettings,
                 on_missing_key: str) -> None:
        self.source = source
        self.keyfn = keyfn
        self.settings = settings
        self.on_missing_key = on_missing_key

    def start_bundle(self) -> None:
        self._cutter = ChunkCutter(self.settings.num_shards, self.settings.compression,
                                   chunk_bytes=self.settings.chunk_bytes)
        self._summary = MapSummary()
        self._chunks = Metrics.counter(_NS, "shuffle_chunks")
        self._bytes = Metrics.counter(_NS, "shuffle_bytes")

    def _key(self, batch: pa.RecordBatch, ordinals: np.ndarray, unit: int, row0: int,
             result: MapResult) -> Iterator[tuple[int, bytes]]:
        table = key_batch(batch, ordinals, self.keyfn, self.source, unit, row0,
                          self.on_missing_key, result)
        result.rows_in += batch.num_rows
        if table is not None:
            yield from self._count(self._cutter.add(table))

    def _count(self, chunks: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
        for p, data in chunks:
            self._chunks.inc()
            self._bytes.inc(len(data))
            yield p, data

    def _fold(self, result: MapResult, schema: pa.Schema | None = None) -> None:
        self._summary.merge(MapSummary(
            rows_in=result.rows_in, dropped=result.dropped,
            key_types={result.key_type} if result.key_type else set(),
            drop_examples=result.drop_examples[:5], schema=schema))

    def finish_bundle(self) -> Iterator[Any]:
        for chunk in self._count(self._cutter.flush()):
            yield GlobalWindows.windowed_value(chunk)
        yield beam.pvalue.TaggedOutput("stats", GlobalWindows.windowed_value(self._summary))


class _ReadUnits(_KeyAndCut):
    """Reads one unit of the source per element (a file, a row range, a TFDS shard)."""

    def process(self, unit: int) -> Iterator[tuple[int, bytes]]:
        result = MapResult()
        row = 0
        for batch in self.source.read(unit):
            if batch.num_rows:
                yield from self._key(batch, unit_ordinals(unit, row, batch.num_rows), unit, row,
                                     result)
                row += batch.num_rows
        self._fold(result)


class _KeyPreRead(_KeyAndCut):
    """Keys batches that the driver read (sources that cannot be read on workers)."""

    def process(self, element: tuple[int, int, bytes]) -> Iterator[tuple[int, bytes]]:
        unit, row0, data = element
        result = MapResult()
        for batch in decode_chunk(data).to_batches():
            yield from self._key(batch, unit_ordinals(unit, row0, batch.num_rows), unit, row0,
                                 result)
            row0 += batch.num_rows
        self._fold(result)


def _driver_batches(source: Source) -> list[tuple[int, int, bytes]]:
    out = []
    for unit in range(source.num_units):
        row = 0
        for batch in source.read(unit):
            out.append((unit, row, encode_chunk(pa.Table.from_batches([batch]), None)))
            row += batch.num_rows
    return out


class ReadAndKey(beam.PTransform):
    """Source → (partition, chunk) elements, tagged ``chunks``; MapSummary's, tagged ``stats``."""

    def __init__(self, source: Source, keyfn: KeyFunction, settings: BeamSettings,
                 on_missing_key: str) -> None:
        super().__init__()
        self.args = (source, keyfn, settings, on_missing_key)

    def expand(self, begin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        source = self.args[0]
        if source.parallel:
            units = (begin | "Units" >> beam.Create(list(range(source.num_units)))
                     | "Spread" >> beam.Reshuffle())
            fn: _KeyAndCut = _ReadUnits(*self.args)
        else:  # an iterator or streaming dataset: read once here, key on the workers
            units = begin | "DriverRead" >> beam.Create(_driver_batches(source))
            fn = _KeyPreRead(*self.args)
        return units | "ReadAndKey" >> beam.ParDo(fn).with_outputs("stats", main="chunks")


# ---- reduce side and commit ----------------------------------------------------------------

class _SummaryFn(beam.CombineFn):
    def create_accumulator(self) -> MapSummary:
        return MapSummary()

    def add_input(self, acc: MapSummary, s: MapSummary) -> MapSummary:
        return acc.merge(s)

    def merge_accumulators(self, accs: Any) -> MapSummary:
        out = MapSummary()
        for a in accs:
            out.merge(a)
        return out

    def extract_output(self, acc: MapSummary) -> MapSummary:
        return acc


@dataclass(frozen=True)
class Layout:
    """What the reduce and commit steps need to agree on the output."""

    root: str
    key_spec: str
    input_schema: pa.Schema | None  # None: inferred from a PCollection (in the summary)
    text_column: str | None  # may be "auto" while the schema is unknown
    group_columns: tuple[str, ...] = ()
    build_id: str = field(default_factory=new_build_id)  # chosen once, on the driver

    def schema(self, summary: MapSummary) -> pa.Schema:
        schema = self.input_schema or summary.schema
        if schema is None:
            raise SettingError("no schema: the input had no examples")
        group_fields(schema, self.group_columns, "the input")
        return with_build_id(output_schema(schema, summary.key_type(self.key_spec)),
                             self.build_id)

    def text(self, summary: MapSummary) -> str | None:
        return choose_text_column(self.schema(summary), self.text_column)


class _WritePartitions(beam.DoFn):
    def __init__(self, layout: Layout, settings: BeamSettings) -> None:
        self.layout = layout
        self.settings = settings

    def process(self, element: tuple[int, Any], summary: MapSummary,
                ) -> Iterator[PartitionResult]:
        partition, chunks = element
        remote = is_remote(self.layout.root)
        # Shards are written on the worker's disk and uploaded whole when OUT is remote.
        root = tempfile.mkdtemp(prefix="fedgroups-shards-") if remote else self.layout.root
        try:
            result, counters = write_partition(
                partition, chunks, root=root, schema=self.layout.schema(summary),
                text_column=self.layout.text(summary), sort_budget=self.settings.sort_budget,
                shard_bytes=self.settings.shard_bytes, group_columns=self.layout.group_columns)
            if remote:
                for shard in result.shards:
                    upload(os.path.join(root, shard["path"]), f"{self.layout.root}/{shard['path']}")
        finally:
            if remote:
                shutil.rmtree(root, ignore_errors=True)
        Metrics.counter(_NS, "spilled_runs").inc(counters["spilled_runs"])
        Metrics.counter(_NS, "rows_written").inc(counters["rows"])
        Metrics.distribution(_NS, "partition_rows").update(counters["rows"])
        yield result


class GroupAndWrite(beam.PTransform):
    """(partition, chunk) elements → one PartitionResult per non-empty partition."""

    def __init__(self, layout: Layout, settings: BeamSettings, summary: Any) -> None:
        super().__init__()
        self.layout, self.settings, self.summary = layout, settings, summary

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return (chunks
                | "Shuffle" >> beam.GroupByKey()
                | "WritePartitions" >> beam.ParDo(_WritePartitions(self.layout, self.settings),
                                                  summary=beam.pvalue.AsSingleton(self.summary)))


def summarize(stats: beam.PCollection) -> beam.PCollection:
    return stats | "Summary" >> beam.CombineGlobally(_SummaryFn())


def counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        metrics = result.metrics().query(MetricsFilter().with_namespace(_NS))
    except (NotImplementedError, AttributeError):
        return out
    for c in metrics.get("counters", []):
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    return out
