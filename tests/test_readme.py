"""The README's commands run as written, read from README.md's own code blocks: the main
job's chain, the second training example, the "Federations of federations" lines in order,
and the test command (which also runs the source's docstring examples).

Set-up steps (``python3 -m venv``, ``pip install``) are not run: these tests use the
environment they run in (CI's run of ``.ci/run`` is the fresh-venv install), and check
instead that it has every package of the extras the README's install lines name.
Training steps get fewer rounds (:data:`SMALL`, :data:`ONE_ROUND`): as written they take
minutes each (the README says how long), far over a test's budget; everything else in the
lines (data, configs, methods, seeds, folders) is as written.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
# configs/tiny.yaml as written trains for a few minutes: two rounds show every step works.
SMALL = ["--set", "rounds=2", "--set", "eval.every=1", "--set", "run.progress=false"]
# configs/world.yaml trains 40 root rounds (~1 min of CPU a run, ten runs): one round each.
ONE_ROUND = "--set rounds=1 --set run.progress=false"
METHODS = ("fl", "hierfavg", "fedper", "local", "worldlm")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def section(title: str) -> str:
    """The README from heading ``title`` to the next heading of the same level."""
    start = README.index(title)
    level = title.split(" ")[0]
    end = README.find(f"\n{level} ", start + len(title))
    return README[start:] if end < 0 else README[start:end]


def main_job_commands() -> list[list[str]]:
    """The ``fedgroups`` steps of the first command under "Start here" (the set-up steps,
    venv and pip, are what this test environment already did)."""
    chain = bash_blocks(section("## Start here"))[0].strip()
    steps = [shlex.split(step) for step in chain.split("&&")]
    return [s for s in steps if s and s[0] == "fedgroups"]


def hierarchy_lines() -> list[str]:
    """The lines of the bash block under "Federations of federations", in order."""
    block = bash_blocks(section("## Federations of federations"))[0]
    return [ln for ln in block.strip().splitlines() if ln.strip()]


def installed_extras(line: str) -> list[str]:
    """The extras an install line names: ``pip install ... -e ".[all,world]"``."""
    found = re.search(r'-e "\.\[([a-z,\-]+)\]"', line)
    assert found, f"no `-e \".[extras]\"` in the install line: {line}"
    return found.group(1).split(",")


def extra_requirements(extra: str) -> list[str]:
    """Distribution names of one extra of pyproject.toml (markers for other platforms
    skipped)."""
    block = re.search(rf"^{re.escape(extra)} = \[(.*?)\]", PYPROJECT, flags=re.S | re.M)
    assert block, f"pyproject.toml has no extra {extra!r}"
    names = []
    for req in re.findall(r'"([^"]+)"', block.group(1)):
        if ";" in req and "linux" not in req:
            continue
        names.append(re.match(r"[A-Za-z0-9_.\-]+", req).group(0))
    return names


def assert_installed(extras: list[str]) -> None:
    missing = []
    for extra in extras:
        for name in extra_requirements(extra):
            try:
                importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(f"{name} ({extra})")
    assert not missing, f"this environment lacks what the README installs: {missing}"


def _env() -> dict[str, str]:
    """This interpreter's bin folder first on PATH (its ``fedgroups``), no progress bars."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, FEDGROUPS_PROGRESS="0",
                PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _fedgroups(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=900)


def test_readme_main_job_is_what_this_test_runs() -> None:
    steps = main_job_commands()
    assert [s[:2] for s in steps] == [["fedgroups", "build"], ["fedgroups", "info"],
                                      ["fedgroups", "train"]], steps


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


def _config_value(config: str, key: str) -> str:
    """A top-level or ``data:`` value of a shipped config (``path`` is under ``data:``)."""
    text = (ROOT / "configs" / config).read_text(encoding="utf-8")
    found = re.search(rf"^\s*{key}:\s*(\S+)", text, flags=re.M)
    assert found, f"configs/{config} has no {key}"
    return found.group(1)


def test_readme_hierarchy_lines_install_build_train_compare() -> None:
    """A newcomer copying the lines in order gets the docs' table: the install names the
    extras the steps need, the data is built where configs/world.yaml reads it, every
    method trains with both seeds, and compare reads exactly those runs."""
    install, build, *rest = hierarchy_lines()
    assert install.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    extras = installed_extras(install)
    assert {"all", "world"} <= set(extras), extras  # world: Django, the recipe's data
    assert "django" in [n.lower() for n in extra_requirements("world")]
    script = "\n".join(rest)
    assert shlex.split(build)[:4] == ["fedgroups", "build", "--recipe", "django_l10n"]
    assert shlex.split(build)[4] == _config_value("world.yaml", "path") == "out/world"
    for m in METHODS:
        assert m in script
    assert "for seed in 0 1" in script and "--set seed=$seed" in script
    assert rest[-1].startswith("fedgroups compare runs/world-* ")
    # world-tiny has its own data and runs, out of the compare's glob
    assert _config_value("world-tiny.yaml", "path") != "out/world"
    assert not _config_value("world-tiny.yaml", "output_dir").startswith("runs/world-")
    # privacy (epsilon) needs dp-accounting: only if the world configs turn it on
    for config in ("world.yaml", "world-tiny.yaml"):
        uses_dp = re.search(r"^[^#]*privacy:\s*\{", (ROOT / "configs" / config).read_text(),
                            flags=re.M)
        if uses_dp:
            assert any("dp-accounting" in extra_requirements(e) for e in extras), config


@pytest.mark.slow
def test_readme_hierarchy_lines_run_in_order(tmp_path: Path) -> None:
    """The lines after the install run as written in bash, each training with one round
    (``fedgroups`` is wrapped to append :data:`ONE_ROUND` to ``train``)."""
    pytest.importorskip("torch")
    install, *rest = hierarchy_lines()
    assert_installed(installed_extras(install))
    os.symlink(ROOT / "configs", tmp_path / "configs")
    script = "\n".join([
        "set -euo pipefail",
        'fedgroups() { if [ "$1" = train ]; then command fedgroups "$@" '
        f'{ONE_ROUND}; else command fedgroups "$@"; fi; }}',
        *rest,
    ])
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{script}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == sorted([f"world-{m}-{s}" for m in METHODS for s in (0, 1)]
                          + ["world-compare"]), runs
    table = (tmp_path / "runs" / "world-compare" / "compare.md").read_text()
    assert "experiment 2" not in table, table  # one experiment: the seeds share a row
    for m in METHODS:
        assert f"`{m}`" in table or f"| {m} " in table, (m, table)


def test_the_test_command_runs_every_docstring_example() -> None:
    """``python -m pytest`` (the README's test command, no paths) collects the docstring
    examples of every module under src/fedgroups that has one: src/fedgroups is among the
    test paths, and collecting it (the project's options) finds a doctest in each."""
    paths = re.search(r"^testpaths = \[(.*?)\]", PYPROJECT, flags=re.M)
    assert paths and '"src/fedgroups"' in paths.group(1), "src/fedgroups not in testpaths"
    src = ROOT / "src" / "fedgroups"
    with_examples = {p.relative_to(ROOT).as_posix() for p in src.rglob("*.py")
                     if ">>>" in p.read_text(encoding="utf-8")}
    assert len(with_examples) > 20
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "src/fedgroups"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = set(re.findall(r"^(src/fedgroups/\S+\.py)(?:::|: \d)", done.stdout, flags=re.M))
    assert collected == with_examples, (sorted(with_examples - collected),
                                        sorted(collected - with_examples))
