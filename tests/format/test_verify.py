"""verify finds every kind of damage; readers refuse damaged data instead of returning it."""

from __future__ import annotations

import json
import os

import pytest

import fedgroups as fg
from fedgroups.errors import CorruptDatasetError, NotADatasetError
from fedgroups.format.manifest import file_sha256
from fedgroups.format.spec import INDEX_FILE, MANIFEST_FILE
from fedgroups.format.verify import verify


@pytest.fixture
def built(tmp_path):
    rows = [{"user": f"u{i % 5}", "text": f"some text {i}"} for i in range(500)]
    fg.build(rows, "field:user", tmp_path / "ds", num_partitions=2)
    return tmp_path / "ds"


def _shard(built) -> str:
    m = json.loads((built / MANIFEST_FILE).read_text())
    return str(built / m["shards"][0]["path"])


def test_sound_dataset_verifies(built):
    assert verify(str(built)) == []


def test_altered_shard_byte(built):
    path = _shard(built)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3] ^= 0xFF
    open(path, "wb").write(bytes(data))
    problems = verify(str(built))
    assert any("sha256 differs" in p and os.path.basename(path) in p for p in problems)


def test_truncated_shard(built):
    path = _shard(built)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 100)
    assert any("truncated" in p for p in verify(str(built)))
    ds = fg.open(built)
    with pytest.raises(CorruptDatasetError, match=os.path.basename(path)):
        for k in ds.keys():
            list(ds.group(k))


def test_altered_index(built):
    path = built / INDEX_FILE
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    assert any("index.pq" in p for p in verify(str(built)))
    with pytest.raises(CorruptDatasetError, match="index.pq"):
        fg.open(built)


def test_missing_manifest(built):
    os.remove(built / MANIFEST_FILE)
    assert "no .fedgroups/manifest.json" in verify(str(built))[0]
    with pytest.raises(NotADatasetError):
        fg.open(built)


def test_manifest_totals_tampered(built):
    m = json.loads((built / MANIFEST_FILE).read_text())
    m["totals"]["examples"] += 1
    (built / MANIFEST_FILE).write_text(json.dumps(m))
    assert any("examples" in p for p in verify(str(built)))


@pytest.mark.parametrize("key_type", ["int64", "binary"])
def test_manifest_key_type_is_checked_against_the_keys(built, key_type):
    m = json.loads((built / MANIFEST_FILE).read_text())
    assert m["key"]["type"] == "string"
    m["key"]["type"] = key_type
    (built / MANIFEST_FILE).write_text(json.dumps(m))
    problems = verify(str(built))
    assert any(p.startswith(str(built / INDEX_FILE)) and
               f"keys are of type string but the manifest's key.type is '{key_type}'" in p
               for p in problems), problems
    assert any("manifest.json" in p and "'__group__' values are of type string" in p
               for p in problems), problems


def test_a_footer_column_rename_is_named_by_verify(built):
    m = json.loads((built / MANIFEST_FILE).read_text())
    path = str(built / m["shards"][0]["path"])
    data = bytearray(open(path, "rb").read())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    data[footer:] = bytes(data[footer:]).replace(b"text", b"tezt")
    open(path, "wb").write(bytes(data))
    m["shards"][0]["sha256"] = file_sha256(path)  # only the schema can tell
    (built / MANIFEST_FILE).write_text(json.dumps(m))
    assert any("has column 'tezt' where the manifest has 'text'" in p
               for p in verify(str(built)))
