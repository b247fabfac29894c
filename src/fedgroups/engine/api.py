"""``fg.build``: source + key → grouped dataset, on the local engine or on Apache Beam."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fedgroups.engine.core import MAX_PARTITIONS, choose_text_column
from fedgroups.engine.phases import PhaseTimer
from fedgroups.engine.plan import make_plan, parse_bytes
from fedgroups.errors import SettingError
from fedgroups.format.finish import finish
from fedgroups.format.group_columns import group_fields, parse_group_columns
from fedgroups.format.publish import check_output, make_staging, publish, remove_stale_staging
from fedgroups.keys.base import KeyFunction
from fedgroups.keys.registry import parse_key
from fedgroups.sources import Source, make_source
from fedgroups.storage import is_remote

Engine = Literal["local", "beam"]
MissingKeyPolicy = Literal["error", "drop"]


@dataclass(frozen=True)
class BuildReport:
    path: str
    manifest: dict[str, Any]
    seconds: float
    stats: dict[str, Any]

    @property
    def examples_per_second(self) -> float:
        return self.manifest["totals"]["examples"] / max(self.seconds, 1e-9)


def build(
    source: Any,
    key: str | Callable[..., Any] | KeyFunction,
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    memory_limit: str | int = "2GB",
    overwrite: bool = False,
    engine: Engine = "local",
    format: str | None = None,
    split: str | None = None,
    encoding_errors: str = "strict",
    text_column: str | None = "auto",
    on_missing_key: MissingKeyPolicy = "error",
    num_partitions: int | None = None,
    shard_size: str | int = "512MB",
    pipeline_options: Sequence[str] | None = None,
    progress: bool | None = None,
    group_columns: str | Sequence[str] | None = None,
) -> BuildReport:
    """Group ``source`` by ``key`` and write a grouped dataset at ``out``.

    Parameters
    ----------
    source : path, glob, list of paths, ``"hf:NAME[:CONFIG]"``, ``"stdlib:"``, a pyarrow
        Table, a ``datasets.Dataset``/``IterableDataset`` or any iterable of dicts.
    key : a KEYSPEC (``field:NAME``, ``url-host:FIELD``, ``hash:N:FIELD``, ``iid:N[:SEED]``,
        ``python:MODULE:FUNCTION``) or a callable example → key (str, bytes or int).
    memory_limit : resident memory the whole build may use, e.g. ``"2GB"``.
    encoding_errors : text files (JSON Lines, CSV/TSV, text) that are not UTF-8:
        ``"strict"`` (default) stops with the file and line; ``"replace"`` puts U+FFFD for
        each invalid sequence and counts them in the manifest (``source``).
    on_missing_key : ``"error"`` (default) stops at the first example with no key;
        ``"drop"`` drops such examples and counts them in the manifest.
    shard_size : largest shard file (uncompressed rows); a bigger group is split into parts.
    group_columns : source columns constant within each group (``("family", "lang")`` or
        ``"family,lang"``), recorded per group in the index (``GroupedDataset.group_table``);
        a column that varies within a group is a ``GroupColumnError`` naming the group.

    Notes
    -----
    With ``workers > 1`` the local engine forks its worker processes (so a lambda works as a
    key). A process that has imported JAX (or another library that runs native threads)
    then prints that library's warning that ``os.fork()`` may deadlock. The workers run
    only the source reader and the key function, never JAX, so the build is sound
    (tests/interop/test_threaded_libraries.py) unless the key function itself calls JAX:
    then use ``workers=1``, or build before importing JAX or with ``fedgroups build``.

    Examples
    --------
    >>> import fedgroups as fg
    >>> rows = [{"user": "a", "text": "hi"}, {"user": "b", "text": "yo"}]
    >>> fg.build(rows, "field:user", "/tmp/fg-doctest", overwrite=True, progress=False).manifest[
    ...     "totals"]["groups"]
    2
    """
    timer = PhaseTimer()
    out = os.fspath(out)
    remote = is_remote(out)
    if not remote:
        out = os.path.abspath(out)
    if engine not in ("local", "beam"):
        raise SettingError(f"engine {engine!r} is not one of: local, beam")
    if on_missing_key not in ("error", "drop"):
        raise SettingError(f"on_missing_key {on_missing_key!r} is not one of: error, drop")
    if num_partitions is not None and (isinstance(num_partitions, bool) or not isinstance(
            num_partitions, int) or not 1 <= num_partitions <= MAX_PARTITIONS):
        raise SettingError(f"num_partitions (--num-shards) must be a whole number from 1 to "
                           f"{MAX_PARTITIONS}, got {num_partitions!r}")
    if progress is None:  # a terminal or notebook shows bars; a log file does not
        from fedgroups.terminal import progress_enabled
        progress = progress_enabled()
    limit = parse_bytes(memory_limit)
    max_shard = parse_bytes(shard_size, "shard_size")
    if remote and engine != "beam":
        raise SettingError(
            f"{out}: the local engine writes to a local directory; build locally and copy, "
            "or use engine='beam' (--engine beam), which writes to gs://, s3://, … directly")
    if not remote:
        check_output(out, overwrite)
    keyfn = parse_key(key)
    gcols = parse_group_columns(group_columns)
    src: Source = make_source(source, format=format, split=split,
                              encoding_errors=encoding_errors)
    where = src.where()
    keyfn.check_columns(src.schema, where)
    group_fields(src.schema, gcols, where)
    text_col = choose_text_column(src.schema, text_column)
    timer.mark("open source")
    t0 = time.perf_counter()
    if engine == "beam":  # the pipeline writes index and manifest itself, as its last step
        from fedgroups.engine.beam_write import run_beam
        manifest, stats = run_beam(
            src, keyfn, out=out, overwrite=overwrite, text_column=text_col,
            on_missing_key=on_missing_key, num_shards=num_partitions, group_columns=gcols,
            pipeline_options=list(pipeline_options or []))
        return BuildReport(path=out, manifest=manifest, seconds=time.perf_counter() - t0,
                           stats=stats)
    remove_stale_staging(out)
    staging = make_staging(out)
    try:
        plan = make_plan(workers=workers, memory_limit=limit,
                         estimated_bytes=src.estimated_bytes, num_partitions=num_partitions)
        from fedgroups.engine.local import run_local
        timer.mark("plan")
        results, schema, stats = run_local(src, keyfn, staging=staging, plan=plan,
                                           text_column=text_col, shard_bytes=max_shard,
                                           on_missing_key=on_missing_key, progress=progress,
                                           group_columns=gcols, timer=timer)
        settings = {"engine": "local", "workers": plan.workers,
                    "memory_limit": plan.memory_limit,
                    "num_partitions": plan.num_partitions, "shard_bytes": max_shard,
                    "on_missing_key": on_missing_key}
        seconds = time.perf_counter() - t0
        settings["seconds"] = round(seconds, 3)
        manifest = finish(staging, results, schema=schema, key_description=keyfn.describe(),
                          source_description={**src.description, **src.summary()},
                          build_settings=settings,
                          text_column=text_col, dropped=int(stats.get("dropped", 0)),
                          group_columns=gcols)
        timer.mark("finish (index, manifest)")
        publish(staging, out, overwrite)
        timer.mark("publish")
        stats["phases"] = timer.as_dict()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildReport(path=out, manifest=manifest, seconds=time.perf_counter() - t0, stats=stats)
