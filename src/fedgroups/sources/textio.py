"""Reading text files (JSON Lines, CSV/TSV, plain text) byte-exactly, with one UTF-8 policy.

Every text format goes through the same checks, so a byte that is not UTF-8 is treated
the same way whatever the format:

- ``encoding_errors="strict"`` (the default): a :class:`SourceError` naming the file and
  the line (1-based, counted in ``\\n``), before any row of that line is used;
- ``encoding_errors="replace"``: each invalid sequence becomes U+FFFD and is counted
  (:class:`ReplacementCounter`), so the build can report how many were replaced.

Lines end at ``\\n`` only (an optional ``\\r`` before it is dropped): a lone ``\\r`` inside
a line is data, as in JSON Lines and in POSIX text.
"""

from __future__ import annotations

import io
import lzma
import multiprocessing as mp
import zlib
from collections.abc import Iterator
from typing import IO, Literal

import numpy as np
import pyarrow as pa

from fedgroups.errors import SettingError, SourceError

EncodingErrors = Literal["strict", "replace"]
ENCODING_ERRORS = ("strict", "replace")
BLOCK_BYTES = 8 << 20
_STEP = 1 << 20  # one read from a stream while filling a block
COMPRESSION = (".gz", ".bz2", ".zst", ".xz")
_BOM = b"\xef\xbb\xbf"
# What a damaged compressed stream raises (gzip: EOFError/BadGzipFile, zlib: error, ...).
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, lzma.LZMAError,
                                                      OSError, ValueError)


def check_encoding_errors(value: str) -> EncodingErrors:
    if value not in ENCODING_ERRORS:
        raise SettingError(
            f"encoding_errors {value!r} is not one of: {', '.join(ENCODING_ERRORS)} "
            "(--encoding-errors strict|replace)")
    return value  # type: ignore[return-value]


class ReplacementCounter:
    """Invalid UTF-8 sequences replaced by U+FFFD, and the lines that held them: in shared
    memory, so that the local engine's forked workers add to the one count the build
    reports (a Beam runner's separate workers do not: see docs/format.md)."""

    def __init__(self) -> None:
        self._values = mp.get_context("fork").Array("q", 2)  # replaced, lines

    def add(self, replaced: int, lines: int) -> None:
        with self._values.get_lock():
            self._values[0] += replaced
            self._values[1] += lines

    @property
    def replaced(self) -> int:
        return int(self._values[0])

    @property
    def lines(self) -> int:
        return int(self._values[1])

    def __getstate__(self) -> dict[str, int]:  # pickled (spawn, Beam): counts from here on
        return {"replaced": self.replaced, "lines": self.lines}  # are that process's own

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__()  # type: ignore[misc]
        self.add(state["replaced"], state["lines"])

    def __repr__(self) -> str:
        return f"ReplacementCounter(replaced={self.replaced}, lines={self.lines})"


def _line_of(data: bytes, offset: int, first_line: int) -> int:
    return first_line + data.count(b"\n", 0, offset)


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8, checked by Arrow (several times faster than
    ``bytes.decode``, and no string is made)."""
    offsets = pa.py_buffer(np.array([0, len(data)], np.int64))
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)]
                              ).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def check_utf8(data: bytes, *, path: str, first_line: int) -> None:
    """Raise the strict policy's error (file, line, column) if ``data`` is not UTF-8."""
    if not is_utf8(data):
        decode_utf8(data, path=path, first_line=first_line, errors="strict")


def decode_utf8(data: bytes, *, path: str, first_line: int, errors: EncodingErrors,
                counter: ReplacementCounter | None = None) -> str:
    """``data`` (whole lines starting at line ``first_line``) as text, under the policy."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "strict":
            line = _line_of(data, e.start, first_line)
            col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
            raise SourceError(
                f"{path}, line {line}: byte {data[e.start:e.start + 1]!r} at column {col} is not "
                "UTF-8 text; fix the file (e.g. iconv -f latin1 -t utf-8), or pass "
                "--encoding-errors replace (encoding_errors='replace') to replace such bytes "
                "with U+FFFD and count them") from None
    text, n, lines = _decode_counting(data)
    if counter is not None:
        counter.add(n, lines)
    return text


def _decode_counting(data: bytes) -> tuple[str, int, int]:
    """Decode with U+FFFD for each invalid sequence; count them and the lines holding them."""
    out: list[str] = []
    n = 0
    bad_lines: set[int] = set()
    pos = 0
    while True:
        try:
            out.append(data[pos:].decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            start, end = pos + e.start, pos + e.end
            out.append(data[pos:start].decode("utf-8"))
            out.append("\ufffd")
            n += 1
            bad_lines.add(data.count(b"\n", 0, start))
            pos = end
    return "".join(out), n, len(bad_lines)


def open_file(path: str) -> IO[bytes]:
    """A file (local or remote, compressed or not) opened for binary reading."""
    from fedgroups.storage import is_remote
    try:
        if is_remote(path) or path.endswith(COMPRESSION):
            import fsspec
            return fsspec.open(path, "rb", compression="infer").open()
        return open(path, "rb")
    except OSError as e:
        raise SourceError(f"{path}: cannot open ({e.strerror or e})") from e


class _CutShort(Exception):
    """Reading a compressed stream failed; ``data`` is what was read before it broke."""

    def __init__(self, data: bytes, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.data, self.cause = data, cause


def _read_upto(f: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end). Read in steps of one decompression
    step each (``read1``), so that a stream that breaks still gives what came before."""
    read = getattr(f, "read1", None) or f.read
    parts: list[bytes] = []
    got = 0
    while got < size:
        try:
            chunk = read(min(size - got, _STEP))
        except DECOMPRESS_ERRORS as e:
            raise _CutShort(b"".join(parts), e) from e
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def cut_short_error(path: str, lines_before: int, data: bytes, cause: BaseException,
                    ) -> SourceError:
    """The error for a stream that broke after ``lines_before`` lines plus ``data``."""
    done = lines_before + data.count(b"\n")
    return SourceError(
        f"{path}: the data ends early: {done:,} complete lines were read and line {done + 1:,} "
        f"is cut off ({type(cause).__name__}: {cause}); a compressed file that ends early "
        "is truncated or damaged — fetch it again")


def line_blocks(f: IO[bytes], path: str, block: int | None = None,
                ) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes of whole lines) of about ``block`` bytes each.

    A line longer than ``block`` comes whole in a bigger piece: nothing limits a line but
    memory. The last piece may lack its final ``\\n``. A leading UTF-8 BOM is dropped. A
    stream that breaks (a truncated ``.gz``) is an error naming the last whole line read.
    """
    block = block or BLOCK_BYTES
    line = 1
    carry = b""  # the start of a line not yet whole
    first = True
    while True:
        try:
            data = carry + _read_upto(f, block)
            end = data.rfind(b"\n") + 1
            while end == 0 and len(data) > len(carry):  # a line longer than the block
                carry = data
                data = carry + _read_upto(f, block)
                end = data.rfind(b"\n") + 1
        except _CutShort as e:
            raise cut_short_error(path, line - 1, carry + e.data, e.cause) from e.cause
        if end == 0:
            end = len(data)  # the last line, without its \n
        data, carry = data[:end], data[end:]
        if first:
            first = False
            if data.startswith(_BOM):
                data = data[len(_BOM):]
        if not data:
            return
        yield line, data
        line += data.count(b"\n")


def split_lines(text: str) -> list[str]:
    """Lines of whole-line text: split at ``\\n``, a ``\\r`` before it dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]


class Utf8Stream(io.RawIOBase):
    """A binary stream that passes UTF-8 through, checked (or repaired) under the policy,
    for parsers that take a stream (CSV). Line numbers count ``\\n`` from the start."""

    def __init__(self, f: IO[bytes], path: str, errors: EncodingErrors,
                 counter: ReplacementCounter | None = None) -> None:
        super().__init__()
        self._f, self._path, self._errors, self._counter = f, path, errors, counter
        self._line = 1
        self._held = b""  # an incomplete UTF-8 sequence at the end of the last read
        self._out = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        # Full reads (short only at the end): a parser may take a short read for a block.
        while len(self._out) < len(b) and not self._eof:
            self._fill()
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _fill(self) -> None:
        try:
            data = _read_upto(self._f, BLOCK_BYTES)
        except _CutShort as e:
            raise cut_short_error(self._path, self._line - 1, self._held + e.data,
                                  e.cause) from e.cause
        if not data:
            self._eof = True
            data, self._held = self._held, b""
        else:
            data, self._held = self._held + data, b""
            # hold back a possibly incomplete sequence at the end (at most 3 bytes)
            tail = _incomplete_tail(data)
            if tail:
                data, self._held = data[:-tail], data[-tail:]
        if not data:
            return
        if self._errors == "strict":
            check_utf8(data, path=self._path, first_line=self._line)
            self._out += data
        else:
            self._out += decode_utf8(data, path=self._path, first_line=self._line,
                                    errors="replace", counter=self._counter).encode("utf-8")
        self._line += data.count(b"\n")

    def close(self) -> None:
        self._f.close()
        super().close()


def _incomplete_tail(data: bytes) -> int:
    """Bytes at the end of ``data`` that start a UTF-8 sequence not yet complete."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b < 0x80:
            return 0
        if b >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return back if back < need else 0
    return 0
