"""``stdlib:`` — the Python standard library's own source code, a corpus every machine has.

One example per paragraph (a block of lines between blank lines) of every ``.py`` file,
with columns ``path`` (relative to the stdlib root), ``package`` (the top-level module or
package it belongs to) and ``text``. Grouping by ``package`` gives ~200 naturally
heterogeneous clients (``email``, ``asyncio``, ``json``, ...) with no download.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from fedgroups.sources.base import Source

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
SCHEMA = pa.schema([("path", pa.string()), ("package", pa.string()), ("text", pa.string())])


def stdlib_files(root: str) -> list[str]:
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
        out.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".py"))
    return sorted(os.path.relpath(p, root) for p in out)


def paragraphs(text: str) -> list[str]:
    blocks, cur = [], []
    for line in text.splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur))
    return blocks


@dataclass
class StdlibSource(Source):
    root: str = ""
    files: list[str] = field(default_factory=list)
    files_per_unit: int = 64

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        rel_paths = self.files[unit * self.files_per_unit:(unit + 1) * self.files_per_unit]
        cols: dict[str, list[str]] = {"path": [], "package": [], "text": []}
        for rel in rel_paths:
            with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
                blocks = paragraphs(f.read())
            package = rel.split(os.sep)[0].removesuffix(".py")
            cols["path"].extend([rel] * len(blocks))
            cols["package"].extend([package] * len(blocks))
            cols["text"].extend(blocks)
        yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)

    def location(self, unit: int, row: int) -> str:
        return f"stdlib files {unit * self.files_per_unit}.., paragraph {row}"


def stdlib_source() -> StdlibSource:
    root = sysconfig.get_paths()["stdlib"]
    files = stdlib_files(root)
    size = sum(os.path.getsize(os.path.join(root, f)) for f in files)
    per = 64
    return StdlibSource(
        description={"kind": "python-stdlib", "root": root, "files": len(files)},
        num_units=-(-len(files) // per), schema=SCHEMA, estimated_bytes=size,
        root=root, files=files, files_per_unit=per,
    )
