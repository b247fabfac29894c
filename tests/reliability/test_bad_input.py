"""The bad-input matrix through the ``fedgroups build`` command: every case ends in one
clear message (exit code 2, ``fedgroups build: error: ...`` naming what is wrong), never a
traceback, and nothing is published."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedgroups.cli import main


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _cases(tmp_path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments after `build`, text the message must contain)."""
    good = _jsonl(tmp_path / "good.jsonl", [{"user": f"u{i % 3}", "text": "t"} for i in range(9)])
    (tmp_path / "latin1.csv").write_bytes(b"user,text\na,ok\nb,caf\xe9\n")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"user": "a", "text": "caf\xe9"}\n')
    (tmp_path / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n")
    data = gzip.compress(b"".join(b'{"user": "a", "text": "%d"}\n' % i for i in range(4000)))
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    pq.write_table(pa.table({"user": ["a"], "__ordinal__": [1]}), tmp_path / "ord.parquet")
    pq.write_table(pa.table({"user": pa.array([2**63, 1], pa.uint64())}), tmp_path / "u64.parquet")
    (tmp_path / "keys_big.py").write_text("def key(ex):\n    return 2**70\n")
    (tmp_path / "keys_raise.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "keys_syntax.py").write_text("def key(ex) return 1\n")
    (tmp_path / "a-file").write_text("precious")
    out = str(tmp_path / "out")
    k = ["--key", "field:user"]
    return {
        "non-UTF-8 CSV": ([str(tmp_path / "latin1.csv"), out, *k], "latin1.csv, line 3"),
        "non-UTF-8 JSONL": ([str(tmp_path / "latin1.jsonl"), out, *k], "latin1.jsonl, line 1"),
        "non-UTF-8 text": ([str(tmp_path / "latin1.txt"), out, "--key", "iid:2"],
                           "latin1.txt, line 2"),
        "truncated gzip": ([str(tmp_path / "cut.jsonl.gz"), out, *k], "truncated or damaged"),
        "__ordinal__ column": ([str(tmp_path / "ord.parquet"), out, *k],
                               "'__ordinal__' has a name fedgroups reserves"),
        "uint64 key >= 2**63": ([str(tmp_path / "u64.parquet"), out, *k],
                                "beyond the signed 64-bit range"),
        "python key 2**70": ([good, out, "--key", "python:keys_big:key"],
                             "returned the int 1180591620717411303424"),
        "key module raises": ([good, out, "--key", "python:keys_raise:key"],
                              "importing module 'keys_raise' failed: RuntimeError: boom"),
        "key module syntax": ([good, out, "--key", "python:keys_syntax:key"],
                              "SyntaxError"),
        "--num-shards 0": ([good, out, *k, "--num-shards", "0"], "got 0"),
        "--num-shards -5": ([good, out, *k, "--num-shards", "-5"], "got -5"),
        "--memory-limit 1KB": ([good, out, *k, "--memory-limit", "1KB"], "1,024 bytes"),
        "--overwrite a file": ([good, str(tmp_path / "a-file"), *k, "--overwrite"],
                               "is a file, not a grouped dataset"),
        "OUT inside a file": ([good, str(tmp_path / "a-file" / "out"), *k],
                              "cannot create a folder in"),
    }


CASES = [
    "non-UTF-8 CSV", "non-UTF-8 JSONL", "non-UTF-8 text", "truncated gzip", "__ordinal__ column",
    "uint64 key >= 2**63", "python key 2**70", "key module raises", "key module syntax",
    "--num-shards 0", "--num-shards -5", "--memory-limit 1KB", "--overwrite a file",
    "OUT inside a file"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_clear_message(tmp_path, monkeypatch, capsys, case):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FEDGROUPS_PROGRESS", "0")
    args, expected = _cases(tmp_path)[case]
    code = main(["build", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fedgroups build: error: ") and "Traceback" not in err
    assert expected in err
    assert not os.path.exists(tmp_path / "out")
    assert (tmp_path / "a-file").read_text() == "precious"
    assert not [e for e in os.listdir(tmp_path) if ".fedgroups-" in e]  # nothing left beside


def test_csv_keys_that_look_like_numbers_stay_apart(tmp_path, capsys):
    (tmp_path / "k.csv").write_text("user,text\n007,a\n7,b\n0007,c\n7,d\n")
    assert main(["build", str(tmp_path / "k.csv"), str(tmp_path / "out"),
                 "--key", "field:user"]) == 0
    import fedgroups as fg
    ds = fg.open(tmp_path / "out")
    assert sorted(ds.keys()) == ["0007", "007", "7"]
    assert [ex["text"] for ex in ds.group("7")] == ["b", "d"]


@pytest.mark.slow  # imports torch
def test_train_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "a-file").write_text("precious")
    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.yaml")
    code = main(["train", config, "--set", f"output_dir={tmp_path / 'a-file'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "is a file, not a directory" in err
    assert (tmp_path / "a-file").read_text() == "precious"
