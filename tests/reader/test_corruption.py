"""Damaged datasets fail loudly, naming the file; they never return wrong data."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

import fedgroups as fg
from fedgroups.errors import CorruptDatasetError, NotADatasetError
from fedgroups.format.spec import MANIFEST_FILE


@pytest.fixture
def copy(small_path: str, tmp_path) -> str:
    dst = str(tmp_path / "ds")
    shutil.copytree(small_path, dst)
    return dst


def _manifest(root: str) -> dict:
    with open(os.path.join(root, MANIFEST_FILE)) as f:
        return json.load(f)


def _shard(root: str, n: int = 0) -> str:
    m = _manifest(root)
    return os.path.join(root, m["shards"][n]["path"])


def _read_all(root: str) -> None:
    ds = fg.open(root)
    for g in ds.groups(seed=0):
        list(g.batches(100))


def test_missing_manifest(copy):
    os.remove(os.path.join(copy, MANIFEST_FILE))
    with pytest.raises(NotADatasetError, match=re.escape(os.path.basename(MANIFEST_FILE))):
        fg.open(copy)


def test_altered_index(copy):
    index = _manifest(copy)["index"]["path"]
    with open(os.path.join(copy, index), "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(CorruptDatasetError,
                       match=re.escape(os.path.basename(index)) + ".*checksum"):
        fg.open(copy)


def test_consistent_checksum_but_wrong_index_rows(copy, shift_index_row):
    # an index rewritten (and re-hashed) with a row range moved: caught by the key check
    key = shift_index_row(copy)
    ds = fg.open(copy)
    with pytest.raises(CorruptDatasetError, match=r"shard-.*should hold exactly group"):
        list(ds.group(key))


def test_truncated_shard(copy):
    path = _shard(copy)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises(CorruptDatasetError, match=os.path.basename(path) + ".*truncated"):
        _read_all(copy)


def test_missing_shard(copy):
    path = _shard(copy)
    os.remove(path)
    with pytest.raises(CorruptDatasetError, match=os.path.basename(path) + ".*missing"):
        _read_all(copy)


def _flip_byte(path: str, where: float) -> str:
    """Alter one byte of the file, ``where`` of the way in; returns the path."""
    at = int(os.path.getsize(path) * where)
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))
    return path


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7])
def test_altered_shard_bytes_never_give_wrong_data(copy, small_path, where):
    path = _flip_byte(_shard(copy), where)
    good = fg.open(small_path)
    try:
        ds = fg.open(copy)
        for key in ds.keys():
            assert ds[key].to_arrow().equals(good[key].to_arrow()), key
    except CorruptDatasetError as e:
        assert os.path.basename(path) in str(e)


@pytest.mark.parametrize("num_threads", [0, 2])
@pytest.mark.parametrize("where", [0.2, 0.5, 0.8])
def test_altered_shard_bytes_never_stream_wrong_data(copy, small_path, where, num_threads):
    path = _flip_byte(_shard(copy), where)
    good = fg.open(small_path)
    try:
        for g in fg.open(copy).groups(seed=3, num_threads=num_threads):
            assert g.to_arrow().equals(good[g.key].to_arrow()), g.key
            assert list(g) == list(good[g.key]), g.key
    except CorruptDatasetError as e:
        assert os.path.basename(path) in str(e)
