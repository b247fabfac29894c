"""A compressed file cut off mid-stream: the error names the file and the real position."""

from __future__ import annotations

import gzip
import json
import re
import zlib

import pytest

import fedgroups as fg
from fedgroups.errors import SourceError
from fedgroups.sources import make_source


def _lines_before_the_cut(data: bytes) -> int:
    return zlib.decompressobj(31).decompress(data).count(b"\n")


@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_a_truncated_gz_names_the_lines_read(tmp_path, ext):
    if ext == "jsonl":
        body = b"".join(json.dumps({"u": f"u{i % 7}", "t": f"text {i} " * 5}).encode() + b"\n"
                        for i in range(20_000))
    else:
        body = b"u,t\n" + b"".join(f"u{i % 7},text {i}\n".encode() for i in range(60_000))
    data = gzip.compress(body)
    cut = data[:len(data) // 2]
    path = tmp_path / f"cut.{ext}.gz"
    path.write_bytes(cut)
    done = _lines_before_the_cut(cut)
    assert done > 1000
    with pytest.raises(SourceError) as err:
        fg.build(str(path), "field:u", tmp_path / "out", progress=False)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert f"{done:,} complete lines were read and line {done + 1:,} is cut off" in message
    assert "truncated or damaged" in message
    assert not re.search(r"\bline 1\b", message)


def test_an_intact_gz_reads_whole(tmp_path):
    path = tmp_path / "ok.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"u": "a", "n": %d}\n' % i for i in range(5000))))
    src = make_source(str(path))
    assert sum(b.num_rows for u in range(src.num_units) for b in src.read(u)) == 5000
