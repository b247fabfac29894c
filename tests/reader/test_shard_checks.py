"""A shard is checked against the manifest when the reader opens it: its schema, where it
is (no link out of the dataset), and which build it belongs to."""

from __future__ import annotations

import base64
import json
import os
import shutil

import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import CorruptDatasetError
from fedgroups.format.layout import manifest_path
from fedgroups.format.manifest import schema_from_json, schema_to_json


@pytest.fixture
def copy(small_path: str, tmp_path) -> str:
    dst = str(tmp_path / "ds")
    shutil.copytree(small_path, dst)
    return dst


def _manifest(root: str) -> dict:
    with open(manifest_path(root)) as f:
        return json.load(f)


def _write_manifest(root: str, m: dict) -> None:
    with open(manifest_path(root), "w") as f:
        json.dump(m, f)


def _rename_in_footer(path: str, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) in the Parquet footer: still valid Parquet."""
    assert len(old) == len(new)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    tail = bytes(data[footer:])
    assert old in tail
    data[footer:] = tail.replace(old, new)
    with open(path, "wb") as f:
        f.write(bytes(data))


def _stream_all(root: str, **kw) -> int:
    n = 0
    for g in fg.open(root).groups(seed=0, **kw):
        for ex in g:
            assert "text" in ex
            n += 1
    return n


READS = {
    "stream": lambda root: _stream_all(root),
    "stream-no-threads": lambda root: _stream_all(root, num_threads=0),
    "random-access": lambda root: [list(fg.open(root).group(k)) for k in fg.open(root).keys()],
    "to_arrow": lambda root: [fg.open(root).group(k).to_arrow() for k in fg.open(root).keys()],
}


@pytest.mark.parametrize("how", sorted(READS))
def test_a_column_renamed_in_one_footer_is_named(copy, how):
    rel = _manifest(copy)["shards"][1]["path"]
    _rename_in_footer(os.path.join(copy, rel), b"text", b"tezt")
    with pytest.raises(CorruptDatasetError) as e:
        READS[how](copy)
    message = str(e.value)
    assert rel in message
    assert "has column 'tezt' where the manifest has 'text'" in message
    assert "altered" in message


@pytest.mark.parametrize("how", ["stream", "random-access"])
def test_a_manifest_schema_with_another_type_is_named(copy, how):
    m = _manifest(copy)
    schema = schema_from_json(m["schema"])
    i = schema.get_field_index("text")
    m["schema"] = schema_to_json(schema.set(i, schema.field(i).with_type(pa.large_string())))
    _write_manifest(copy, m)
    with pytest.raises(CorruptDatasetError,
                       match=r"shard-\d{5}-\d{4}\.parquet.*column 'text' of type string where "
                             r"the manifest has large_string"):
        READS[how](copy)


def test_the_key_column_type_is_checked_too(copy):
    m = _manifest(copy)
    schema = schema_from_json(m["schema"])
    m["schema"]["arrow_ipc_base64"] = base64.b64encode(
        schema.set(0, schema.field(0).with_type(pa.binary())).serialize().to_pybytes()).decode()
    _write_manifest(copy, m)
    with pytest.raises(CorruptDatasetError, match="column '__group__' of type string"):
        READS["stream"](copy)


def test_a_symlinked_shard_leading_outside_is_refused(copy, tmp_path):
    rel = _manifest(copy)["shards"][0]["path"]
    shard = os.path.join(copy, rel)
    elsewhere = str(tmp_path / "elsewhere.parquet")
    shutil.move(shard, elsewhere)
    os.symlink(elsewhere, shard)
    for how in ("stream", "random-access"):
        with pytest.raises(CorruptDatasetError, match=f"{rel}: leads outside the dataset"):
            READS[how](copy)


def test_a_symlinked_metadata_folder_leading_outside_is_refused(copy, tmp_path):
    meta = os.path.join(copy, ".fedgroups")
    elsewhere = str(tmp_path / "meta-elsewhere")
    shutil.move(meta, elsewhere)
    os.symlink(elsewhere, meta)
    with pytest.raises(CorruptDatasetError, match=r"\.fedgroups/manifest\.json: leads outside"):
        fg.open(copy)


def test_a_symlink_inside_the_dataset_is_read(copy):
    rel = _manifest(copy)["shards"][0]["path"]
    shard = os.path.join(copy, rel)
    os.rename(shard, os.path.join(copy, ".fedgroups", "moved"))
    os.symlink(os.path.join(".fedgroups", "moved"), shard)
    assert _stream_all(copy) == fg.open(copy).num_examples


def _rebuild(out: str, tag: str, n: int) -> None:
    rows = [{"user": f"u{i % 9}", "text": f"{tag} {i}"} for i in range(n)]
    fg.build(rows, "field:user", out, overwrite=True, workers=1, num_partitions=3,
             progress=False)


@pytest.mark.parametrize("how", ["stream", "random-access"])
def test_a_shard_opened_after_an_overwrite_says_open_again(tmp_path, how):
    """The rebuilt shards differ in size from the ones the reader was opened with: the
    error is about the rebuild ("another build ... open the dataset again"), not about a
    truncated file."""
    out = str(tmp_path / "out")
    _rebuild(out, "old", 300)
    ds = fg.open(out)
    _rebuild(out, "new-and-longer", 700)
    with pytest.raises(CorruptDatasetError, match="another build.*open the dataset again"):
        if how == "stream":
            for g in ds.groups(seed=0):
                list(g)
        else:
            for k in ds.keys():
                list(ds.group(k))


def test_a_truncated_shard_of_an_unchanged_dataset_is_still_called_truncated(copy):
    shard = os.path.join(copy, _manifest(copy)["shards"][0]["path"])
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 10)
    with pytest.raises(CorruptDatasetError, match="truncated or altered"):
        READS["stream"](copy)


def test_types_parquet_gives_back_otherwise_read_and_verify(tmp_path):
    """date64 is read back from Parquet as date32, time32[s] as time32[ms]: the shard's
    schema is compared with the manifest's as Parquet gives it back, and the rows come in
    those types everywhere (no false alarm, no ArrowInvalid)."""
    import datetime

    from fedgroups.format.verify import verify
    n = 40
    table = pa.table({
        "user": [f"u{i % 4}" for i in range(n)],
        "day": pa.array([datetime.datetime(2020, 1, 1 + i % 20) for i in range(n)],
                        pa.date64()),
        "at": pa.array(list(range(n)), pa.time32("s")),
        "ls": pa.array([f"x{i}" for i in range(n)], pa.large_string()),
    })
    out = str(tmp_path / "typed")
    fg.build(table, "field:user", out, workers=1, progress=False)
    ds = fg.open(out)
    assert verify(out) == []
    assert ds.schema.field("day").type == pa.date32()
    assert sum(len(list(g)) for g in ds.groups(seed=0)) == n
    tables = [ds.group(k).to_arrow() for k in ds.keys()]
    assert sum(t.num_rows for t in tables) == n
    assert tables[0].schema.field("ls").type == pa.large_string()
