"""A key's errors are one readable line: the missing column with the input's columns and
file; a python: key that raises SystemExit is reported, not obeyed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

import fedgroups as fg
from fedgroups.errors import KeyFunctionError, SettingError


def test_a_missing_field_names_file_and_columns_in_one_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"user": "a", "text": "x"}) + "\n")
    with pytest.raises(SettingError) as err:
        fg.build(str(path), "field:usr", tmp_path / "out", progress=False)
    message = str(err.value)
    assert message == (f"key 'field:usr': column 'usr' does not exist in {path} (did you mean "
                       "'user'?); its columns are: user, text")
    with pytest.raises(SettingError, match=r"in .*a\.jsonl \(and 1 more\); its columns"):
        fg.build([str(path), str(path)], "field:nothing", tmp_path / "out2", progress=False)


def _exit_three(example):
    if example["n"] == 3:
        sys.exit(3)
    return example["u"]


def test_a_key_function_raising_system_exit_is_an_error(tmp_path):
    path = tmp_path / "k.jsonl"
    path.write_text("".join(json.dumps({"u": "a", "n": i}) + "\n" for i in range(6)))
    with pytest.raises(KeyFunctionError, match=r"k\.jsonl, row 3: key function _exit_three "
                                               r"raised SystemExit\(3\)"):
        fg.build(str(path), _exit_three, tmp_path / "out", progress=False)
    rows = pa.table({"u": ["a", "b"], "n": [3, 4]})
    with pytest.raises(KeyFunctionError, match=r"table row 0: .*SystemExit\(3\)"):
        fg.build(rows, _exit_three, tmp_path / "out2", progress=False)


def test_the_cli_reports_system_exit_and_fails_with_its_own_code(tmp_path):
    (tmp_path / "exitkey.py").write_text(
        "import sys\n\ndef k(ex):\n    if ex['n'] == 2:\n        sys.exit(3)\n    return ex['u']\n")
    data = tmp_path / "k.jsonl"
    data.write_text("".join(json.dumps({"u": "a", "n": i}) + "\n" for i in range(4)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)}
    cli = "import sys; from fedgroups.cli import main; sys.exit(main())"
    run = subprocess.run([sys.executable, "-c", cli, "build", str(data), str(tmp_path / "out"),
                          "--key", "python:exitkey:k"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode not in (0, 3)
    assert "row 2: key function k raised SystemExit(3)" in run.stderr
