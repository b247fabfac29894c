"""Datasets in format version 1 (manifest and index at the root, shards/) still read.

``data/v1`` was written by the last version-1 writer (see data/README.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import fedgroups as fg
from fedgroups.cli import main
from fedgroups.format.verify import verify

V1 = Path(__file__).parent / "data" / "v1"


@pytest.fixture
def v1(tmp_path) -> Path:
    path = tmp_path / "v1"
    shutil.copytree(V1, path)
    return path


def test_v1_opens_and_reads(v1):
    ds = fg.open(v1)
    assert ds.manifest["format_version"] == 1
    assert ds.keys() == [f"u{i}" for i in range(7)]
    assert [r["n"] for r in ds.group("u3")] == list(range(3, 70, 7))
    streamed = {g.key: [r["n"] for r in g] for g in ds.groups(seed=1)}
    assert streamed == {f"u{i}": list(range(i, 70, 7)) for i in range(7)}


def test_v1_verifies(v1):
    assert verify(str(v1)) == []
    with open(v1 / "shards" / "shard-00001-0000.parquet", "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert any("shard-00001-0000.parquet" in p for p in verify(str(v1)))


def test_v1_info_says_version_1(v1, capsys):
    assert main(["info", str(v1)]) == 0
    assert "fedgroups.grouped-dataset v1" in capsys.readouterr().out


def test_overwriting_a_v1_dataset_writes_v2(v1):
    rows = [{"user": "a", "text": "x"}, {"user": "b", "text": "y"}]
    fg.build(rows, "field:user", v1, overwrite=True, workers=1, progress=False)
    assert fg.open(v1).manifest["format_version"] == 2
    assert sorted(os.listdir(v1)) == [".fedgroups", "shard-00000-0000.parquet"]
