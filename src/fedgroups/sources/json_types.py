"""JSON Lines: parsing pieces of whole lines, and column types fixed by one pass over all files.

Arrow's JSON reader guesses a column's type from the rows of each block it parses: a
block of small integers gives ``int64``; a block holding an integer above the int64 range
gives ``double`` and rounds every large integer in it. So the type, and the values, would
depend on where blocks happen to start. Instead, before any row is used, every JSON Lines
file is parsed once and each place that holds numbers (a column, or a field or list items
inside one, such as ``meta.ids[]``) gets one type for the whole input:

* only integers, all in the int64 range → ``int64``;
* only integers, some above int64 but all in ``0 .. 2**64-1`` → ``uint64``;
* only integers, otherwise (negative and above int64, or beyond 2**64) →
  ``decimal128(38, 0)`` (``decimal256(76, 0)`` past 38 digits): exact, never rounded;
* any number written with a fraction or an exponent (``2.5``, ``2.0``, ``1e3``) →
  ``double``; an integer of the same column that a double cannot hold exactly (beyond
  ``2**53``, such as ``9007199254740993``) is then an error naming file, line and column.

Pieces whose numbers are all below 2**53 in magnitude are typed from Arrow's parse alone;
only a piece holding larger numbers is looked at number by number, as written.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

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


# ---- one pass: the type of each column of numbers ---------------------------------------

Steps = tuple[str | None, ...]  # a column and the fields below it; None: a list's items


def show(steps: Steps) -> str:
    """``meta.ids[]`` for the items of list ``ids`` in struct column ``meta``."""
    out = str(steps[0])
    for step in steps[1:]:
        out += "[]" if step is None else f".{step}"
    return out


@dataclass
class NumberColumn:
    """What the pass saw of the numbers at one place (a column, or a field inside one)."""

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


Numbers = dict[Steps, NumberColumn]
Visit = Callable[[Steps, pa.DataType, pa.ChunkedArray | None], pa.DataType]


def retype(t: pa.DataType, values: pa.ChunkedArray | None, steps: Steps,
           visit: Visit) -> pa.DataType:
    """``t`` with each number type inside it (a column, a list's items, a struct's fields)
    replaced by ``visit(steps, type, values there)``; ``values`` may be None."""
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return visit(steps, t, values)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        items = pc.list_flatten(values) if values is not None else None
        inner = t.value_field.with_type(retype(t.value_type, items, (*steps, None), visit))
        return pa.list_(inner) if pa.types.is_list(t) else pa.large_list(inner)
    if pa.types.is_struct(t):
        return pa.struct([
            t.field(i).with_type(retype(
                t.field(i).type, pc.struct_field(values, [i]) if values is not None else None,
                (*steps, t.field(i).name), visit))
            for i in range(t.num_fields)])
    return t


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


def _at(value: Any, steps: Steps) -> Iterator[Any]:
    """The values at ``steps`` below ``value`` (every item of a list)."""
    if not steps:
        yield value
    elif steps[0] is None:
        if isinstance(value, list):
            for v in value:
                yield from _at(v, steps[1:])
    elif isinstance(value, dict) and steps[0] in value:
        yield from _at(value[steps[0]], steps[1:])


def _tokens(raw: bytes, path: str, first_line: int, places: list[Steps],
            numbers: Numbers) -> None:
    """The slow, exact look at a piece: each number at ``places`` as written (rare: only
    pieces holding numbers of magnitude 2**53 and above come here)."""
    for i, s in enumerate(raw.split(b"\n")):
        if not s.strip():
            continue
        record = json.loads(s, parse_int=_IntToken, parse_float=_FloatToken)
        where = f"{path}, line {first_line + i}"
        for steps in places:
            col = numbers[steps]
            for v in _at(record, steps):
                if isinstance(v, _IntToken):
                    col.add_int(int(v), str(v), where)
                elif isinstance(v, _FloatToken) and col.fraction_at is None:
                    col.fraction_at = f"e.g. {v} at {where}"


def _fraction_at(values: pa.ChunkedArray, top: bool, raw: bytes, path: str, line: int) -> str:
    """Where a piece's doubles show a fraction (the line, for a top-level column)."""
    frac = pc.not_equal(values, pc.floor(values))
    if top and pc.any(frac).as_py():
        row = pc.index(frac, True).as_py()
        return f"e.g. {values[row].as_py()} at {path}, line {_line_of_row(raw, line, row)}"
    last = line + raw.count(b"\n")
    return f"{path}, lines {line}..{last}"


def scan_piece(table: pa.Table, raw: bytes, path: str, line: int,
               numbers: Numbers) -> pa.Schema:
    """Note the numbers of one parsed piece; its schema with every number type (top-level
    or nested) as int64, a stand-in until the pass has seen all pieces."""
    exact: list[Steps] = []

    def visit(steps: Steps, t: pa.DataType, values: pa.ChunkedArray | None) -> pa.DataType:
        col = numbers.setdefault(steps, NumberColumn(show(steps)))
        if values is None or values.null_count == len(values):
            return pa.int64()
        if pa.types.is_floating(t):
            if pc.any(pc.greater_equal(pc.abs(values), float(_EXACT))).as_py():
                exact.append(steps)  # integers among these may be beyond a double
            elif col.fraction_at is None:
                # every integer here is below 2**53, so in int64: Arrow chose double
                # because some number has a fraction or an exponent
                col.fraction_at = _fraction_at(values, len(steps) == 1, raw, path, line)
        elif pc.min(values).as_py() < 0:
            col.negative = True
        return pa.int64()

    schema = pa.schema([f.with_type(retype(f.type, table.column(f.name), (f.name,), visit))
                        for f in table.schema])
    if exact:
        _tokens(raw, path, line, exact, numbers)
    return schema


def with_number_types(schema: pa.Schema, numbers: Numbers) -> pa.Schema:
    """``schema`` with each number type decided by the whole pass."""
    def decided(steps: Steps, t: pa.DataType, values: pa.ChunkedArray | None) -> pa.DataType:
        col = numbers.get(steps)
        return col.arrow_type() if col is not None else t

    return pa.schema([f.with_type(retype(f.type, None, (f.name,), decided)) for f in schema])


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
