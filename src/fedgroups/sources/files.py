"""Parquet, JSON Lines, CSV and plain-text files, local or remote (through fsspec)."""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from fedgroups.errors import SettingError, SourceError
from fedgroups.sources.base import BATCH_ROWS, Source, conform, unify

FORMATS = ("parquet", "jsonl", "csv", "tsv", "text")
_EXT = {
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "tsv",
    ".txt": "text", ".text": "text", ".md": "text",
}
_COMPRESSION = (".gz", ".bz2", ".zst", ".xz")
_BLOCK = 8 << 20


def format_of(path: str, forced: str | None) -> str:
    if forced:
        if forced not in FORMATS:
            raise SettingError(f"--format {forced!r} is not one of {', '.join(FORMATS)}")
        return forced
    base = path
    for c in _COMPRESSION:
        if base.endswith(c):
            base = base[: -len(c)]
    ext = os.path.splitext(base)[1].lower()
    if ext not in _EXT:
        raise SettingError(
            f"{path}: cannot tell the format from the extension {ext!r}; "
            f"pass --format (one of {', '.join(FORMATS)})"
        )
    return _EXT[ext]


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def resolve_paths(spec: str | list[str]) -> list[str]:
    """Expand a path, directory or glob (or a list of them) into a sorted list of files."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for s in specs:
        if _is_remote(s):
            try:
                import fsspec
                fs, _, paths = fsspec.get_fs_token_paths(s)
            except (ImportError, ValueError) as e:
                raise SourceError(
                    f"{s}: no filesystem for this URL ({e}); install its fsspec package "
                    "(gcsfs for gs://, s3fs for s3://, huggingface_hub for hf://)"
                ) from e
            proto = s.split("://", 1)[0]
            found = sorted(p if "://" in p else f"{proto}://{p}" for p in paths)
        elif os.path.isdir(s):
            found = sorted(
                p for p in glob.glob(os.path.join(s, "**", "*"), recursive=True)
                if os.path.isfile(p) and not os.path.basename(p).startswith((".", "_"))
            )
        elif any(ch in s for ch in "*?["):
            found = sorted(p for p in glob.glob(s, recursive=True) if os.path.isfile(p))
        else:
            if not os.path.exists(s):
                raise SourceError(f"{s}: no such file or directory")
            found = [s]
        if not found:
            raise SourceError(f"{s}: matches no files")
        out.extend(found)
    return out


def _open(path: str) -> Any:
    try:
        if _is_remote(path):
            import fsspec
            return fsspec.open(path, "rb", compression="infer").open()
        if path.endswith(_COMPRESSION):
            import fsspec
            return fsspec.open(path, "rb", compression="infer").open()
        return open(path, "rb")
    except OSError as e:
        raise SourceError(f"{path}: cannot open ({e.strerror or e})") from e


def _text_batches(path: str) -> Iterator[pa.RecordBatch]:
    with _open(path) as f:
        reader = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline=None)
        lines: list[str] = []
        try:
            for line in reader:
                lines.append(line.rstrip("\n"))
                if len(lines) >= BATCH_ROWS:
                    yield pa.RecordBatch.from_pydict({"text": pa.array(lines, pa.string())})
                    lines = []
        except UnicodeDecodeError as e:
            raise SourceError(f"{path}: not UTF-8 text ({e})") from e
        if lines:
            yield pa.RecordBatch.from_pydict({"text": pa.array(lines, pa.string())})


def _raw_batches(path: str, fmt: str) -> Iterator[pa.RecordBatch]:
    """Batches of one file in its own inferred schema."""
    if fmt == "parquet":
        # pre_buffer would read whole row groups (or files) ahead: memory must stay bounded
        source = path if not _is_remote(path) else _open(path)
        pf = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
        yield from pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False)
    elif fmt == "jsonl":
        with _open(path) as f:
            yield from pjson.open_json(f, read_options=pjson.ReadOptions(block_size=_BLOCK))
    elif fmt in ("csv", "tsv"):
        parse = pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
        with _open(path) as f:
            yield from pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=_BLOCK),
                                     parse_options=parse)
    else:
        yield from _text_batches(path)


def _file_schema(path: str, fmt: str) -> tuple[pa.Schema, int | None, int | None]:
    """(schema, uncompressed bytes estimate, rows) without reading the whole file."""
    try:
        if fmt == "parquet":
            md = pq.ParquetFile(_open(path)).metadata
            size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
            return md.schema.to_arrow_schema(), size, md.num_rows
        if fmt == "text":
            return pa.schema([("text", pa.string())]), _size(path), None
        first = next(iter(_raw_batches(path, fmt)), None)
        if first is None:
            raise SourceError(f"{path}: the file is empty")
        return first.schema, _size(path), None
    except SourceError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise SourceError(f"{path}: cannot read as {fmt}: {e}") from e


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path) if not _is_remote(path) else None
    except OSError:
        return None


@dataclass
class FileSource(Source):
    paths: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        path, fmt = self.paths[unit], self.formats[unit]
        row = 0
        try:
            for batch in _raw_batches(path, fmt):
                yield conform(batch, self.schema, f"{path} (rows from {row})")
                row += batch.num_rows
        except SourceError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise SourceError(f"{path}: cannot read as {fmt} near row {row}: {e}") from e

    def location(self, unit: int, row: int) -> str:
        return f"{self.paths[unit]}, row {row}"


def file_source(spec: str | list[str], fmt: str | None = None) -> FileSource:
    paths = resolve_paths(spec)
    formats = [format_of(p, fmt) for p in paths]
    infos = [_file_schema(p, f) for p, f in zip(paths, formats)]
    schema = unify([(p, s) for p, (s, _, _) in zip(paths, infos)])
    sizes = [b for _, b, _ in infos]
    rows = [r for _, _, r in infos]
    return FileSource(
        description={"kind": "files", "paths": paths if len(paths) <= 20 else paths[:20] + ["..."],
                     "num_files": len(paths), "formats": sorted(set(formats))},
        num_units=len(paths),
        schema=schema,
        estimated_bytes=sum(sizes) if all(b is not None for b in sizes) else None,
        estimated_rows=sum(rows) if all(r is not None for r in rows) else None,
        paths=paths,
        formats=formats,
    )
