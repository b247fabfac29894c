"""JSON Lines: parsing pieces of whole lines, and column types fixed by one pass over all files.

Arrow's JSON reader guesses a column's type from the rows of each block it parses: a
block of small integers gives ``int64``; a block holding an integer above the int64 range
gives ``double`` and rounds every large integer in it. So the type, and the values, would
depend on where blocks happen to start. Instead, before any row is used, every JSON Lines
file is parsed once and each top-level column of numbers gets one type for the whole input:

* only integers, all in the int64 range → ``int64``;
* only integers, some above int64 but all in ``0 .. 2**64-1`` → ``uint64``;
* only integers, otherwise (negative and above int64, or beyond 2**64) →
  ``decimal128(38, 0)`` (``decimal256(76, 0)`` past 38 digits): exact, never rounded;
* any number written with a fraction or an exponent (``2.5``, ``2.0``, ``1e3``) →
  ``double``; an integer of the same column that a double cannot hold exactly (beyond
  ``2**53``, such as ``9007199254740993``) is then an error naming file, line and column.

Numbers inside lists or structs keep Arrow's guess (int64, else double).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from fedgroups.errors import SourceError
from fedgroups.sources.textio import (
    EncodingErrors,
    ReplacementCounter,
    check_utf8,
    decode_utf8,
    line_blocks,
)

JSON_BLOCK_BYTES = 1 << 20  # JSON Lines parse blocks (parallel); a longer line gets its own
_EXACT = 1 << 53  # integers of larger magnitude are not all exactly doubles
_INT64 = range(-(1 << 63), 1 << 63)


def read_json(raw: bytes, parse: pjson.ParseOptions) -> pa.Table:
    """Whole lines of JSON, parsed in parallel blocks; a line longer than a block (Arrow
    calls it "straddling") is parsed with one block as large as the piece."""
    try:
        return pjson.read_json(io.BytesIO(raw), parse_options=parse,
                               read_options=pjson.ReadOptions(block_size=JSON_BLOCK_BYTES))
    except pa.ArrowInvalid as e:
        if "straddling" not in str(e):
            raise
    return pjson.read_json(io.BytesIO(raw), parse_options=parse,
                           read_options=pjson.ReadOptions(block_size=len(raw) + 1,
                                                          use_threads=False))


def jsonl_error(path: str, first_line: int, text: str, err: Exception) -> str:
    """The message for a piece of JSON Lines that did not parse: the first bad line of the
    file, found by parsing the piece line by line (only on this error path)."""
    message = re.sub(r"^JSON parse error: ", "", str(err))
    rows = []  # file line number of each non-blank line (pyarrow counts those as rows)
    for i, s in enumerate(text.split("\n")):
        if not s.strip():
            continue
        rows.append(first_line + i)
        try:
            json.loads(s)
        except ValueError as e:
            return f"{path}, line {first_line + i}: not valid JSON ({e.msg}, column {e.colno})"
    m = re.search(r" in row (\d+)$", message)
    if m and int(m.group(1)) < len(rows):
        return f"{path}, line {rows[int(m.group(1))]}: {message[:m.start()]}"
    return (f"{path}, lines {first_line}..{first_line + text.count(chr(10))}: {message}")


def jsonl_pieces(f: IO[bytes], path: str, errors: EncodingErrors,
                 counter: ReplacementCounter | None = None) -> Iterator[tuple[int, bytes]]:
    """(first line, UTF-8 bytes of whole lines), checked (or repaired and counted in
    ``counter``) under the policy."""
    for line, data in line_blocks(f, path):
        if errors == "replace":
            data = decode_utf8(data, path=path, first_line=line, errors="replace",
                               counter=counter).encode("utf-8")
        else:
            check_utf8(data, path=path, first_line=line)
        if len(data) >= 1 << 31:
            raise SourceError(f"{path}, line {line}: a JSON line of 2 GiB or more cannot "
                              "be read; split the record")
        yield line, data


def parse_piece(raw: bytes, parse: pjson.ParseOptions, path: str, line: int) -> pa.Table:
    try:
        return read_json(raw, parse)
    except pa.ArrowInvalid as e:
        raise SourceError(jsonl_error(path, line, raw.decode("utf-8", "replace"), e)) from None


# ---- one pass: the type of each top-level column of numbers ----------------------------

@dataclass
class NumberColumn:
    """What the pass saw of the numbers of one top-level column."""

    name: str
    negative: bool = False
    beyond_int64: bool = False
    beyond_uint64: bool = False
    digits: int = 0  # of the longest integer beyond int64
    fraction_at: str | None = None  # where a number with a fraction or exponent was
    inexact_at: tuple[str, str] | None = None  # (where, text): an integer no double holds

    def add_int(self, value: int, text: str, where: str) -> None:
        self.negative |= value < 0
        if value not in _INT64:
            self.beyond_int64 = True
            self.beyond_uint64 |= value >= 1 << 64
            self.digits = max(self.digits, len(str(abs(value))))
        if self.inexact_at is None and abs(value) > _EXACT and int(float(value)) != value:
            self.inexact_at = (where, text)

    def arrow_type(self) -> pa.DataType:
        if self.fraction_at is not None:
            if self.inexact_at is not None:
                where, text = self.inexact_at
                raise SourceError(
                    f"{where}: column {self.name!r} holds the integer {text}, which a 64-bit "
                    f"float cannot hold exactly, and numbers with a fraction or exponent "
                    f"({self.fraction_at}), which make the column a float column; write that "
                    "column's numbers as strings, or all as integers, so no value is rounded")
            return pa.float64()
        if not self.beyond_int64:
            return pa.int64()
        if not self.negative and not self.beyond_uint64:
            return pa.uint64()
        if self.digits <= 38:
            return pa.decimal128(38, 0)
        if self.digits <= 76:
            return pa.decimal256(76, 0)
        raise SourceError(f"column {self.name!r} holds an integer of {self.digits} digits; "
                          "integers of more than 76 digits must be written as strings")


class _IntToken(str):
    pass


class _FloatToken(str):
    pass


def _line_of_row(raw: bytes, first_line: int, row: int) -> int:
    """The file line of the ``row``-th non-blank line of ``raw`` (Arrow's row numbering)."""
    seen = -1
    for i, s in enumerate(raw.split(b"\n")):
        if s.strip():
            seen += 1
            if seen == row:
                return first_line + i
    return first_line


def _tokens(raw: bytes, path: str, first_line: int, names: list[str],
            columns: dict[str, NumberColumn]) -> None:
    """The slow, exact look at a piece: each number of ``names`` as written (rare: only
    pieces holding numbers of magnitude 2**53 and above come here)."""
    for i, s in enumerate(raw.split(b"\n")):
        if not s.strip():
            continue
        record = json.loads(s, parse_int=_IntToken, parse_float=_FloatToken)
        where = f"{path}, line {first_line + i}"
        for name in names:
            v = record.get(name)
            if isinstance(v, _IntToken):
                columns[name].add_int(int(v), str(v), where)
            elif isinstance(v, _FloatToken) and columns[name].fraction_at is None:
                columns[name].fraction_at = f"e.g. {v} at {where}"


def _double_column(values: pa.ChunkedArray, col: NumberColumn, raw: bytes, path: str,
                   line: int) -> bool:
    """Note what a column Arrow read as doubles holds; True if its numbers must be looked
    at as written (some are 2**53 or more: integers among them may be beyond a double)."""
    if pc.any(pc.greater_equal(pc.abs(values), float(_EXACT))).as_py():
        return True
    # Every integer written here is below 2**53 and so in int64: Arrow chose double
    # because some number has a fraction or an exponent.
    if col.fraction_at is None:
        frac = pc.not_equal(values, pc.floor(values))
        row = pc.index(frac, True).as_py() if pc.any(frac).as_py() else -1
        last = line + raw.count(b"\n")
        col.fraction_at = (f"e.g. {values[row].as_py()} at {path}, line "
                           f"{_line_of_row(raw, line, row)}" if row >= 0 else
                           f"{path}, lines {line}..{last}")
    return False


def scan_piece(table: pa.Table, raw: bytes, path: str, line: int,
               columns: dict[str, NumberColumn]) -> pa.Schema:
    """Note the numbers of one parsed piece; its schema with every top-level number
    column as int64 (a stand-in until the pass has seen all pieces)."""
    fields, exact = [], []
    for f in table.schema:
        if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)):
            fields.append(f)
            continue
        col = columns.setdefault(f.name, NumberColumn(f.name))
        values = table.column(f.name)
        if pa.types.is_floating(f.type):
            if _double_column(values, col, raw, path, line):
                exact.append(f.name)
        elif values.null_count < len(values) and pc.min(values).as_py() < 0:
            col.negative = True
        fields.append(pa.field(f.name, pa.int64()))
    if exact:
        _tokens(raw, path, line, exact, columns)
    return pa.schema(fields)


def with_number_types(schema: pa.Schema, columns: dict[str, NumberColumn]) -> pa.Schema:
    """``schema`` with each number column's type decided by the whole pass."""
    for name, col in columns.items():
        i = schema.get_field_index(name)
        if i >= 0:
            schema = schema.set(i, schema.field(i).with_type(col.arrow_type()))
    return schema


def unify_pieces(path: str, schemas: list[tuple[int, pa.Schema]]) -> pa.Schema:
    """One schema for the pieces of one file; a column whose values change kind (text in
    one place, numbers in another) is an error naming the lines."""
    line, out = schemas[0]
    for at, s in schemas[1:]:
        try:
            out = pa.unify_schemas([out, s], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise SourceError(
                f"{path}, lines {line}.. and {at}..: a column holds values of different kinds "
                f"({e}); give each column one kind of value (numbers, text, lists, ...)") from e
    return out
