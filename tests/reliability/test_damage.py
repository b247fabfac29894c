"""Damage in every file kind is caught and named: verify checks every manifest field
against the files, and a reader returns the exact rows or raises an error naming the
damaged file — never other rows, another exception type, or an undamaged file's name."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil

import pytest

import fedgroups as fg
from fedgroups.errors import CorruptDatasetError, FedGroupsError
from fedgroups.format.layout import manifest_path
from fedgroups.format.verify import verify

from .helpers import rows


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("damage") / "ds")
    examples = rows("ok", 600) + [{"user": None, "text": "no key"}] * 3
    fg.build(examples, "field:user", out, workers=1, num_partitions=2, shard_size="2KB",
             on_missing_key="drop", progress=False)
    return out


@pytest.fixture
def ds(pristine, tmp_path):
    out = str(tmp_path / "ds")
    shutil.copytree(pristine, out)
    return out


def _manifest(out: str) -> dict:
    with open(manifest_path(out)) as f:
        return json.load(f)


def _write(out: str, m: dict) -> None:
    with open(manifest_path(out), "w") as f:
        json.dump(m, f)


def _all_rows(out: str) -> dict:
    d = fg.open(out)
    return {k: [ex["text"] for ex in d.group(k)] for k in d.keys()}


def test_the_pristine_dataset_verifies(pristine):
    m = _manifest(pristine)
    assert verify(pristine) == []
    assert m["totals"]["dropped_examples"] == 3 and m["totals"]["parts"] > m["totals"]["groups"]


EDITS = {  # manifest field -> how to change it (each one a lie about the files)
    **{f"totals.{k}": (lambda m, k=k: m["totals"].__setitem__(k, m["totals"][k] + 1))
       for k in ("groups", "parts", "examples", "bytes", "words", "shards", "dropped_examples",
                 "largest_group_examples")},
    **{f"shards[1].{k}": (lambda m, k=k: m["shards"][1].__setitem__(k, m["shards"][1][k] + 1))
       for k in ("num_rows", "num_bytes", "file_bytes")},
    "shards[1].sha256": lambda m: m["shards"][1].__setitem__("sha256", "0" * 64),
    **{f"index.{k}": (lambda m, k=k: m["index"].__setitem__(k, m["index"][k] + 1))
       for k in ("num_rows", "file_bytes")},
    "index.sha256": lambda m: m["index"].__setitem__("sha256", "f" * 64),
    "build_id": lambda m: m.__setitem__("build_id", "0" * 32),
    "no build_id": lambda m: m.pop("build_id"),
    "text_column": lambda m: m.__setitem__("text_column", "user"),
    "group_columns": lambda m: m.__setitem__("group_columns", ["lang"]),
    "key.type": lambda m: m["key"].__setitem__("type", "float"),
    "schema": lambda m: m["schema"].__setitem__("arrow_ipc_base64", "AAAA" + m["schema"][
        "arrow_ipc_base64"][4:]),
    "shards order": lambda m: m["shards"].reverse(),
    "a shard dropped": lambda m: (m["shards"].pop(), m["totals"].__setitem__("shards", len(
        m["shards"]))),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_verify_checks_every_manifest_field(ds, field):
    m = _manifest(ds)
    EDITS[field](m)
    _write(ds, m)
    problems = verify(ds)
    assert problems, f"verify missed a change to {field}"
    assert all(isinstance(p, str) and p for p in problems)


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "shards/../x.parquet",
                                  "a\\b.parquet", "", "ABSOLUTE-COPY"])
def test_paths_outside_the_dataset_are_refused(ds, tmp_path, path):
    m = _manifest(ds)
    if path == "ABSOLUTE-COPY":  # an identical copy elsewhere: checksum and size agree
        path = str(tmp_path / "copy.parquet")
        shutil.copy(os.path.join(ds, m["shards"][0]["path"]), path)
    m["shards"][0]["path"] = path
    _write(ds, m)
    assert any("not a plain relative path" in p for p in verify(ds))
    with pytest.raises(CorruptDatasetError, match="not a plain relative path"):
        fg.open(ds)


def test_a_symlink_out_of_the_dataset_is_refused_by_verify(ds, tmp_path):
    m = _manifest(ds)
    shard = os.path.join(ds, m["shards"][0]["path"])
    elsewhere = str(tmp_path / "elsewhere.parquet")
    shutil.move(shard, elsewhere)
    os.symlink(elsewhere, shard)
    assert any("leads outside the dataset" in p for p in verify(ds))


def test_a_damaged_schema_is_named_on_open_and_in_verify(ds):
    m = _manifest(ds)
    m["schema"]["arrow_ipc_base64"] = base64.b64encode(b"not a schema").decode()
    _write(ds, m)
    assert "schema does not decode" in verify(ds)[0]
    with pytest.raises(CorruptDatasetError, match="manifest.*schema does not decode"):
        fg.open(ds)


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def _offsets(size: int, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    tail = [size - k for k in (1, 5, 9, 40, 200) if size - k > 0]  # the footer and its length
    return sorted(set(rng.sample(range(4, size - 8), n) + tail))


@pytest.mark.parametrize("how", ["random-access", "stream"])
def test_byte_flips_in_each_shard_are_named_or_harmless(pristine, tmp_path, how):
    expected = _all_rows(pristine)
    shards = [s["path"] for s in _manifest(pristine)["shards"]]
    seen = {"named": 0, "harmless": 0}
    for i, rel in enumerate(shards[:3]):
        size = os.path.getsize(os.path.join(pristine, rel))
        for off in _offsets(size, 6, seed=i):
            out = str(tmp_path / f"s{i}-{off}")
            shutil.copytree(pristine, out)
            _flip(os.path.join(out, rel), off)
            assert any(os.path.basename(rel) in p for p in verify(out))
            try:
                if how == "random-access":
                    got = _all_rows(out)
                else:
                    d = fg.open(out)
                    got = {g.key: [ex["text"] for ex in g] for g in d.groups(seed=1)}
            except CorruptDatasetError as e:
                assert os.path.basename(rel) in str(e), (rel, off, str(e))
                seen["named"] += 1
                continue
            assert got == expected, f"a flip at byte {off} of {rel} changed the rows read"
            seen["harmless"] += 1  # e.g. in statistics the reader does not use
    assert seen["named"] > 0


@pytest.mark.parametrize("kind", ["manifest", "index"])
def test_byte_flips_in_manifest_and_index(pristine, tmp_path, kind):
    m = _manifest(pristine)
    rel = os.path.relpath(manifest_path(pristine), pristine) if kind == "manifest" \
        else m["index"]["path"]
    size = os.path.getsize(os.path.join(pristine, rel))
    expected = _all_rows(pristine)
    for off in _offsets(size, 10, seed=7):
        out = str(tmp_path / f"{kind}-{off}")
        shutil.copytree(pristine, out)
        _flip(os.path.join(out, rel), off)
        problems = verify(out)
        try:
            got = _all_rows(out)
        except FedGroupsError as e:
            assert problems and os.path.basename(rel) in str(e) or "manifest" in str(e)
            continue
        # a flip that leaves a valid manifest may change a descriptive field only
        assert got == expected


@pytest.mark.parametrize("how", ["random-access", "stream"])
def test_a_footer_flip_that_renames_the_key_column_is_named(ds, how):
    rel = _manifest(ds)["shards"][0]["path"]
    path = os.path.join(ds, rel)
    data = bytearray(open(path, "rb").read())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    at = data.find(b"__group__", footer)  # the footer's schema names the column first
    data[at + 2] = ord("X")
    open(path, "wb").write(bytes(data))
    with pytest.raises(CorruptDatasetError, match=os.path.basename(rel)):
        if how == "random-access":
            _all_rows(ds)
        else:
            for g in fg.open(ds).groups(seed=0):
                list(g)
