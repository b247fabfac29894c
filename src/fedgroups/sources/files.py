"""Parquet, JSON Lines, CSV and plain-text files, local or remote (through fsspec)."""

from __future__ import annotations

import glob
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
from fedgroups.sources.json_types import (
    NumberColumn,
    jsonl_pieces,
    parse_piece,
    scan_piece,
    unify_pieces,
    with_number_types,
)
from fedgroups.sources.textio import (
    COMPRESSION,
    DECOMPRESS_ERRORS,
    EncodingErrors,
    ReplacementCounter,
    Utf8Stream,
    check_encoding_errors,
    decode_utf8,
    line_blocks,
    open_file,
    split_lines,
)
from fedgroups.storage import is_remote

FORMATS = ("parquet", "jsonl", "csv", "tsv", "text")
_EXT = {
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "tsv",
    ".txt": "text", ".text": "text", ".md": "text",
}
_BLOCK = 8 << 20


def format_of(path: str, forced: str | None) -> str:
    if forced:
        if forced not in FORMATS:
            raise SettingError(f"--format {forced!r} is not one of {', '.join(FORMATS)}")
        return forced
    base = path
    for c in COMPRESSION:
        if base.endswith(c):
            base = base[: -len(c)]
    ext = os.path.splitext(base)[1].lower()
    if ext not in _EXT:
        raise SettingError(
            f"{path}: cannot tell the format from the extension {ext!r}; "
            f"pass --format (one of {', '.join(FORMATS)})"
        )
    return _EXT[ext]


def resolve_paths(spec: str | list[str]) -> list[str]:
    """Expand a path, directory or glob (or a list of them) into a sorted list of files."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for s in specs:
        if is_remote(s):
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


def _text_batches(path: str, errors: EncodingErrors, counter: ReplacementCounter | None,
                  ) -> Iterator[pa.RecordBatch]:
    """One row per line (split at ``\\n`` only: a lone ``\\r`` is data)."""
    with open_file(path) as f:
        for line, data in line_blocks(f, path):
            text = decode_utf8(data, path=path, first_line=line, errors=errors, counter=counter)
            lines = split_lines(text)
            for lo in range(0, len(lines), BATCH_ROWS):
                yield pa.RecordBatch.from_pydict(
                    {"text": pa.array(lines[lo:lo + BATCH_ROWS], pa.string())})


def _jsonl_batches(path: str, schema: pa.Schema | None, errors: EncodingErrors,
                   counter: ReplacementCounter | None) -> Iterator[pa.RecordBatch]:
    """JSON Lines parsed in pieces of whole lines, so no line is too long for a block and
    an error names one line of the file."""
    parse = pjson.ParseOptions(explicit_schema=schema,
                               unexpected_field_behavior="error" if schema else "infer")
    with open_file(path) as f:
        for line, raw in jsonl_pieces(f, path, errors, counter):
            yield from parse_piece(raw, parse, path, line).to_batches(max_chunksize=BATCH_ROWS)


def _jsonl_infos(paths: list[str], errors: EncodingErrors) -> list[_FileInfo]:
    """One pass over every JSON Lines file: each column's type from all of them (see
    :mod:`fedgroups.sources.json_types`) and the exact number of rows."""
    numbers: dict[str, NumberColumn] = {}
    found: list[tuple[pa.Schema, int]] = []
    parse = pjson.ParseOptions(unexpected_field_behavior="infer")
    for path in paths:
        pieces, rows = [], 0
        try:
            with open_file(path) as f:
                for line, raw in jsonl_pieces(f, path, errors):
                    table = parse_piece(raw, parse, path, line)
                    rows += table.num_rows
                    pieces.append((line, scan_piece(table, raw, path, line, numbers)))
        except (pa.ArrowException, *DECOMPRESS_ERRORS) as e:
            raise SourceError(f"{path}: cannot read as jsonl: {e}") from e
        if not rows:
            raise SourceError(f"{path}: the file is empty")
        found.append((unify_pieces(path, pieces), rows))
    return [_FileInfo(with_number_types(schema, numbers), _size(p), rows)
            for p, (schema, rows) in zip(paths, found)]


def _csv_names(path: str, fmt: str, errors: EncodingErrors) -> list[str]:
    """Column names from the header (read with type inference, which is then discarded)."""
    with Utf8Stream(open_file(path), path, errors) as f:
        reader = pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=_BLOCK),
                               parse_options=_csv_parse(fmt))
        return reader.schema.names


def _csv_parse(fmt: str) -> pcsv.ParseOptions:
    return pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)


def _csv_batches(path: str, fmt: str, names: list[str] | None, errors: EncodingErrors,
                 counter: ReplacementCounter | None) -> Iterator[pa.RecordBatch]:
    """Every column as text, exactly as written: no type is guessed (``007`` stays
    ``007``, ``NA`` and empty fields stay strings)."""
    names = names if names is not None else _csv_names(path, fmt, errors)
    convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                  strings_can_be_null=False)
    with Utf8Stream(open_file(path), path, errors, counter) as f:
        yield from pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=_BLOCK),
                                 parse_options=_csv_parse(fmt), convert_options=convert)


def _raw_batches(path: str, fmt: str, row_groups: list[int] | None = None, *,
                 schema: pa.Schema | None = None, errors: EncodingErrors = "strict",
                 counter: ReplacementCounter | None = None) -> Iterator[pa.RecordBatch]:
    """Batches of one file (for Parquet, of some of its row groups) in its own schema."""
    if fmt == "parquet":
        # pre_buffer would read whole row groups (or files) ahead: memory must stay bounded
        source = path if not is_remote(path) else open_file(path)
        pf = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
        yield from pf.iter_batches(batch_size=BATCH_ROWS, row_groups=row_groups,
                                   use_threads=False)
    elif fmt == "jsonl":
        yield from _jsonl_batches(path, schema, errors, counter)
    elif fmt in ("csv", "tsv"):
        yield from _csv_batches(path, fmt, schema.names if schema is not None else None,
                                errors, counter)
    else:
        yield from _text_batches(path, errors, counter)


@dataclass(frozen=True)
class _FileInfo:
    schema: pa.Schema
    bytes: int | None  # uncompressed estimate
    rows: int | None  # exact for Parquet, estimated from the first block for JSONL/CSV
    row_group_rows: list[int] | None = None  # Parquet only
    row_group_bytes: list[int] | None = None


def _file_info(path: str, fmt: str, errors: EncodingErrors = "strict") -> _FileInfo:
    """What planning needs, without reading the whole file."""
    try:
        if fmt == "parquet":
            md = pq.ParquetFile(open_file(path)).metadata
            rg = [md.row_group(i) for i in range(md.num_row_groups)]
            return _FileInfo(md.schema.to_arrow_schema(), sum(r.total_byte_size for r in rg),
                             md.num_rows, [r.num_rows for r in rg],
                             [r.total_byte_size for r in rg])
        size = _size(path)
        if fmt == "text":
            return _FileInfo(pa.schema([("text", pa.string())]), size, None)
        first = next(iter(_raw_batches(path, fmt, errors=errors)), None)
        if first is None:
            raise SourceError(f"{path}: the file is empty")
        compressed = path.endswith(COMPRESSION)
        rows = None if size is None or compressed else \
            max(first.num_rows, round(first.num_rows * size / min(size, _BLOCK)))
        return _FileInfo(first.schema, size, rows)
    except SourceError:
        raise
    except (pa.ArrowException, *DECOMPRESS_ERRORS) as e:
        raise SourceError(f"{path}: cannot read as {fmt}: {e}") from e


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path) if not is_remote(path) else None
    except OSError:
        return None


UNIT_BYTES = 128 << 20  # a big Parquet file is read as several units of row groups


@dataclass(frozen=True)
class FileUnit:
    """A file, or a run of a Parquet file's row groups, read by one worker."""

    file: int
    row_groups: list[int] | None  # None: the whole file
    first_row: int  # the unit's first row within the file (for error messages)


def parquet_units(file: int, rows: list[int], sizes: list[int]) -> list[FileUnit]:
    """Consecutive row groups of one file, about UNIT_BYTES each (at least one)."""
    units, group, first, acc, row = [], [], 0, 0, 0
    for i, (n, b) in enumerate(zip(rows, sizes)):
        if group and acc + b > UNIT_BYTES:
            units.append(FileUnit(file, group, first))
            group, first, acc = [], row, 0
        group.append(i)
        acc += b
        row += n
    if group or not units:
        units.append(FileUnit(file, group or None, first))
    return units


@dataclass
class FileSource(Source):
    paths: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    units: list[FileUnit] = field(default_factory=list)
    encoding_errors: EncodingErrors = "strict"
    # invalid UTF-8 replaced in this process (encoding_errors="replace"); the engine sums it
    replacements: ReplacementCounter | None = None

    def summary(self) -> dict[str, Any]:
        if self.replacements is None:
            return {}
        return {"replaced_utf8_sequences": self.replacements.replaced,
                "lines_with_replacements": self.replacements.lines}

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        u = self.units[unit]
        path, fmt = self.paths[u.file], self.formats[u.file]
        row = u.first_row
        try:
            for batch in _raw_batches(path, fmt, u.row_groups, schema=self.schema,
                                      errors=self.encoding_errors, counter=self.replacements):
                yield conform(batch, self.schema, f"{path} (rows from {row})")
                row += batch.num_rows
        except SourceError:
            raise
        except (pa.ArrowException, *DECOMPRESS_ERRORS) as e:
            raise SourceError(f"{path}: cannot read as {fmt} near row {row}: {e}") from e

    def location(self, unit: int, row: int) -> str:
        u = self.units[unit]
        return f"{self.paths[u.file]}, row {u.first_row + row}"


def _infos(paths: list[str], formats: list[str], errors: EncodingErrors) -> list[_FileInfo]:
    """Each file's planning facts; the JSON Lines files' together, in one pass."""
    jsonl = iter(_jsonl_infos([p for p, f in zip(paths, formats) if f == "jsonl"], errors))
    return [next(jsonl) if f == "jsonl" else _file_info(p, f, errors)
            for p, f in zip(paths, formats)]


def _spec_text(spec: str | list[str]) -> str:
    """What the user named, as one line: the path or glob, or the first of a list."""
    if isinstance(spec, str):
        return spec
    more = f" (and {len(spec) - 1} more)" if len(spec) > 1 else ""
    return f"{spec[0]}{more}"


def file_source(spec: str | list[str], fmt: str | None = None,
                encoding_errors: str = "strict") -> FileSource:
    """Files as a source. Text formats (JSON Lines, CSV/TSV, text) must be UTF-8: a byte
    that is not is an error naming file and line, unless ``encoding_errors="replace"``.
    CSV/TSV columns are read as text, exactly as written."""
    errors = check_encoding_errors(encoding_errors)
    paths = resolve_paths(spec)
    formats = [format_of(p, fmt) for p in paths]
    infos = _infos(paths, formats, errors)
    schema = unify([(p, i.schema) for p, i in zip(paths, infos)])
    units: list[FileUnit] = []
    for f, info in enumerate(infos):
        if info.row_group_rows:
            units.extend(parquet_units(f, info.row_group_rows, info.row_group_bytes or []))
        else:
            units.append(FileUnit(f, None, 0))
    sizes = [i.bytes for i in infos]
    rows = [i.rows for i in infos]
    return FileSource(
        description={"kind": "files", "spec": _spec_text(spec),
                     "paths": paths if len(paths) <= 20 else paths[:20] + ["..."],
                     "num_files": len(paths), "formats": sorted(set(formats)),
                     "encoding_errors": errors},
        num_units=len(units),
        schema=schema,
        estimated_bytes=sum(sizes) if all(b is not None for b in sizes) else None,
        estimated_rows=sum(rows) if all(r is not None for r in rows) else None,
        paths=paths,
        formats=formats,
        units=units,
        encoding_errors=errors,
        replacements=ReplacementCounter() if errors == "replace" else None,
    )
