"""The fedgroups command end to end: build, info, verify, head, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

from fedgroups.cli import main


def _write_jsonl(path, n=60):
    path.write_text("".join(json.dumps({"url": f"https://site{i % 4}.org/p{i}",
                                        "text": f"doc {i}"}) + "\n" for i in range(n)))


def test_build_info_verify_head(tmp_path, capsys):
    _write_jsonl(tmp_path / "in.jsonl")
    out = str(tmp_path / "out")
    assert main(["build", str(tmp_path / "in.jsonl"), out, "--key", "url-host:url",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "build finished" in text and "groups" in text and "60" in text
    assert main(["info", out]) == 0
    text = capsys.readouterr().out
    assert "site0.org" not in text  # info shows totals, not data
    assert ".fedgroups/README.md" in text and "dataset card" in text
    assert main(["info", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["groups"] == 4
    assert main(["verify", out]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["head", out, "--group", "site2.org", "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("== group 'site2.org': 15 examples") and len(lines) == 3


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["build", str(tmp_path / "missing.jsonl"), str(tmp_path / "o"), "--key",
                 "field:x", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl: no such file" in err and "Traceback" not in err
    _write_jsonl(tmp_path / "in.jsonl")
    assert main(["build", str(tmp_path / "in.jsonl"), str(tmp_path / "o"), "--key",
                 "field:nope", "--quiet"]) == 2
    assert "column 'nope' does not exist" in capsys.readouterr().err
    assert main(["head", str(tmp_path / "in.jsonl")]) == 2
    assert main(["verify", str(tmp_path)]) == 1


def test_head_unknown_group_suggests_close_keys(tmp_path, capsys):
    _write_jsonl(tmp_path / "in.jsonl")
    out = str(tmp_path / "out")
    main(["build", str(tmp_path / "in.jsonl"), out, "--key", "url-host:url", "--quiet"])
    capsys.readouterr()
    assert main(["head", out, "--group", "site9.org"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedgroups.cli", "--version"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "fedgroups" in proc.stdout


def test_build_from_a_recipe_with_options(tmp_path, capsys):
    from tests.recipes.test_shakespeare import CURRENT

    (tmp_path / "pg100.txt").write_text(CURRENT, encoding="utf-8")
    out = str(tmp_path / "shakespeare")
    assert main(["build", "--recipe", "shakespeare", out, "--recipe-option",
                 f"path={tmp_path / 'pg100.txt'}", "--quiet"]) == 0
    assert "build finished" in capsys.readouterr().out
    assert main(["build", "--recipe", "shakespeare", out, "--recipe-option", "nope=1",
                 "--overwrite", "--quiet"]) == 2
    assert "no option" in capsys.readouterr().err
    assert main(["stats", out]) == 0
    assert "groups" in capsys.readouterr().out


def test_partitioner_keyspecs_reach_the_build(tmp_path):
    import fedgroups as fg

    rows = [{"label": i % 5, "text": "x"} for i in range(500)]
    fg.build(rows, "dirichlet:10:0.5:label:1", tmp_path / "d")
    assert fg.open(tmp_path / "d").num_examples == 500


def test_build_takes_several_sources_as_a_shell_expanded_glob(tmp_path, capsys):
    """``fedgroups build data/*.jsonl out --key ...`` unquoted: the shell passes each file."""
    for i in range(3):
        _write_jsonl(tmp_path / f"part{i}.jsonl", n=20)
    out = str(tmp_path / "out")
    files = sorted(str(p) for p in tmp_path.glob("*.jsonl"))
    assert main(["build", *files, out, "--key", "url-host:url", "--quiet"]) == 0
    import fedgroups as fg
    ds = fg.open(out)
    assert ds.num_examples == 60 and ds.manifest["source"]["num_files"] == 3
    capsys.readouterr()
    assert main(["build", files[0], "stdlib:", str(tmp_path / "o2"), "--key", "field:x",
                 "--quiet"]) == 2
    assert "'stdlib:' is a source of its own" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "o3"), "--key", "field:x", "--quiet"]) == 2
    assert "give SOURCE, OUT and --key" in capsys.readouterr().err


def _subcommand(name):
    from fedgroups.cli import make_parser

    parser = make_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def test_info_verify_head_have_descriptions_and_engine_has_help():
    for name in ("info", "verify", "head"):
        p = _subcommand(name)
        assert p.description and len(p.description) > 40, name
        assert all(a.help for a in p._actions if a.dest == "path"), name
    engine = next(a for a in _subcommand("build")._actions if a.dest == "engine")
    assert engine.help and "beam" in engine.help


def test_build_accepts_quiet_and_no_progress_alike(tmp_path):
    _write_jsonl(tmp_path / "in.jsonl")
    for flag in ("--quiet", "--no-progress"):
        out = str(tmp_path / flag.strip("-"))
        assert main(["build", str(tmp_path / "in.jsonl"), out, "--key", "url-host:url",
                     flag]) == 0


def test_info_and_stats_write_bytes_in_the_same_units(tmp_path, capsys):
    _write_jsonl(tmp_path / "in.jsonl", n=400)
    out = str(tmp_path / "out")
    main(["build", str(tmp_path / "in.jsonl"), out, "--key", "url-host:url", "--quiet"])
    capsys.readouterr()
    main(["info", out])
    info = dict(line.split("  ", 1) for line in capsys.readouterr().out.splitlines()[2:])
    total = info["bytes (uncompressed)"].strip()
    assert total.endswith(" KiB")
    main(["stats", out])
    bytes_row = next(line for line in capsys.readouterr().out.splitlines()
                     if line.startswith("bytes"))
    assert bytes_row.rstrip().endswith(total)


def _build_in_subprocess(tmp_path, stderr, name):
    import os

    _write_jsonl(tmp_path / "in.jsonl", n=200)
    env = {k: v for k, v in os.environ.items() if k != "FEDGROUPS_PROGRESS"}
    return subprocess.run([sys.executable, "-m", "fedgroups.cli", "build",
                           str(tmp_path / "in.jsonl"), str(tmp_path / name), "--key",
                           "url-host:url", "--workers", "1"],
                          stdout=subprocess.PIPE, stderr=stderr, env=env, timeout=300)


def test_progress_bars_only_on_a_terminal(tmp_path):
    """Into a pipe or log file: no bars (no carriage-return redraws). On a terminal (a
    pseudo-terminal here): bars."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    proc = _build_in_subprocess(tmp_path, subprocess.PIPE, "piped")
    assert proc.returncode == 0
    assert b"\r" not in proc.stderr and b"grouping" not in proc.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 cols
    try:
        proc = _build_in_subprocess(tmp_path, follower, "tty")
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert b"grouping" in seen


def test_progress_setting_order():
    import io
    import os

    from fedgroups.terminal import progress_enabled

    class Tty(io.StringIO):
        def isatty(self):
            return True

    old = os.environ.pop("FEDGROUPS_PROGRESS", None)
    try:
        assert progress_enabled(None, Tty()) is True
        assert progress_enabled(None, io.StringIO()) is False
        assert progress_enabled(False, Tty()) is False
        assert progress_enabled(True, io.StringIO()) is True
        os.environ["FEDGROUPS_PROGRESS"] = "1"
        assert progress_enabled(None, io.StringIO()) is True
        os.environ["FEDGROUPS_PROGRESS"] = "0"
        assert progress_enabled(None, Tty()) is False
    finally:
        os.environ.pop("FEDGROUPS_PROGRESS", None)
        if old is not None:
            os.environ["FEDGROUPS_PROGRESS"] = old
