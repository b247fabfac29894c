"""The README's commands run as written (at a small size): the main job's chain and the
training examples that name files this repository ships."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Small size: a few rounds instead of the configs' defaults (later --set wins).
SMALL = ["--set", "rounds=2", "--set", "eval.every=1", "--set", "run.progress=false"]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def main_job_commands() -> list[list[str]]:
    """The ``fedgroups`` steps of the first command under "Start here" (the set-up steps,
    venv and pip, are what this test environment already did)."""
    start = README.index("## Start here")
    chain = bash_blocks(README[start:])[0].strip()
    steps = [shlex.split(step) for step in chain.split("&&")]
    return [s for s in steps if s and s[0] == "fedgroups"]


def test_readme_main_job_is_what_this_test_runs() -> None:
    steps = main_job_commands()
    assert [s[:2] for s in steps] == [["fedgroups", "build"], ["fedgroups", "info"],
                                      ["fedgroups", "train"]], steps


def _fedgroups(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("fedgroups")
    cmd = [str(exe) if exe.exists() else "fedgroups", *args[1:]]
    env = dict(os.environ, FEDGROUPS_PROGRESS="0")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_readme_main_job_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    os.symlink(ROOT / "configs", tmp_path / "configs")
    for step in main_job_commands():
        args = step + (SMALL if step[1] == "train" else [])
        done = _fedgroups(args, tmp_path)
        assert done.returncode == 0, f"{shlex.join(args)}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "runs" / "tiny" / "metrics.csv").exists()
    # The second training example in the README, as written (plus the small size).
    line = next(ln for block in bash_blocks(README) for ln in block.splitlines()
                if ln.startswith("fedgroups train configs/tiny.yaml --set rounds=60"))
    args = shlex.split(line.split("#")[0]) + SMALL
    done = _fedgroups(args, tmp_path)
    assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
