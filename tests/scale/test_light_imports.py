"""`import fedgroups` and `fedgroups --help` must not pay for numpy, pyarrow or torch, nor
a small build for pandas."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

HEAVY = ("numpy", "pyarrow", "torch", "pandas")

_PROBE = """
import sys
{code}
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _heavy_imported(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, heavy=HEAVY)],
                         capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[-1]
    assert line.startswith("HEAVY:"), out
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


@pytest.mark.parametrize("code", [
    "import fedgroups",
    "import fedgroups.cli",
    "import fedgroups.stats",
    # --help builds every sub-command's parser (stats, train, compare) and exits
    "from fedgroups.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from fedgroups.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n"
    "    pass",
])
def test_no_heavy_imports(code: str) -> None:
    assert _heavy_imported(code) == []


def test_build_help_still_lists_every_keyspec(capsys: pytest.CaptureFixture[str]) -> None:
    from fedgroups.cli import main
    from fedgroups.keys.registry import KEYSPECS

    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in KEYSPECS.values():
        assert cls.usage.split(":")[0].split("-")[0] in text  # argparse may wrap at '-'


def test_stats_api_names_are_functions() -> None:
    import fedgroups as fg
    import fedgroups.stats.summary  # binds the submodule on the package

    assert callable(fg.stats.summary) and callable(fg.stats.label_counts)
    assert fg.stats.PERCENTILES


def test_core_commands_skip_the_optional_subcommands() -> None:
    """build/info/verify/head do not import the train/compare/stats modules for their parsers."""
    code = ("import sys\nfrom fedgroups.cli import main\ntry:\n    main(['build', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print('OPT:' + ','.join(m for m in sys.modules if m.startswith(('fedgroups.fl', "
            "'fedgroups.stats'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "OPT:"


# Reports an import of pandas in this process or in a forked worker (they inherit the
# finder), with the stack that asked for it.
_BUILD_PROBE = """
import os, sys, traceback

class _ReportPandas:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            print(f"IMPORTS PANDAS (pid {{os.getpid()}}):\\n" + "".join(traceback.format_stack()),
                  file=sys.stderr, flush=True)
        return None

sys.meta_path.insert(0, _ReportPandas())
import pyarrow, pyarrow.compute, pyarrow.json, pyarrow.parquet
if "pandas" in sys.modules:
    print("PYARROW-IMPORTS-PANDAS")
    sys.exit(0)
from fedgroups.cli import main
code = main({argv!r})
print("CODE", code, "pandas" in sys.modules)
"""


@pytest.mark.parametrize(("fmt", "key", "verbose"), [("parquet", "url-host:url", True),
                                                      ("jsonl", "field:lang", False),
                                                      ("parquet", "hash:8:url", False)])
def test_a_small_build_never_imports_pandas(tmp_path: Path, fmt: str, key: str,
                                            verbose: bool) -> None:
    """pyarrow imports pandas (~0.25 s) at its first conversion of Python or NumPy values to
    Arrow or back; the build converts through fedgroups.arrays, in the parent and workers."""
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed: nothing could import it")
    rows = [{"url": f"https://Site{i % 3}.org/p{i}", "text": f"doc {i} of a few words",
             "lang": ("en", "fr", "de")[i % 4 % 3]} for i in range(40)]
    sources = []
    for f in range(2):  # two files: the map runs in the workers too, not only the reduce
        path = tmp_path / f"in-{f}.{fmt}"
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows[f::2]), path)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows[f::2]))
        sources.append(str(path))
    argv = ["build", *sources, str(tmp_path / "out"), "--key", key, "--workers", "2",
            "--quiet", *(["--verbose"] if verbose else [])]
    done = subprocess.run([sys.executable, "-c", _BUILD_PROBE.format(argv=argv)],
                          capture_output=True, text=True)
    if "PYARROW-IMPORTS-PANDAS" in done.stdout:
        pytest.skip("this pyarrow imports pandas when it is imported: no build can avoid it")
    assert done.returncode == 0, done.stderr
    assert "IMPORTS PANDAS" not in done.stderr, done.stderr
    assert done.stdout.splitlines()[-1] == "CODE 0 False", done.stdout


_OPEN_PROBE = """
import sys
import pyarrow, pyarrow.compute, pyarrow.parquet
if "pandas" in sys.modules:
    print("PYARROW-IMPORTS-PANDAS")
    sys.exit(0)
import fedgroups as fg
ds = fg.open({root!r})
rows = list(ds[{key!r}])
print("ROWS", len(rows), "pandas" in sys.modules, "pyarrow.dataset" in sys.modules)
"""


def test_opening_a_dataset_and_reading_a_group_imports_neither_pandas_nor_datasets(
        tmp_path: Path) -> None:
    """pyarrow.dataset (~0.3 s, and pandas with it) is imported by a stream's first scan,
    not by fg.open or random access."""
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed: nothing could import it")
    import fedgroups as fg
    rows = [{"user": f"u{i % 40:02d}", "text": f"doc {i}"} for i in range(2000)]
    fg.build(rows, "field:user", str(tmp_path / "ds"), progress=False)
    done = subprocess.run([sys.executable, "-c", _OPEN_PROBE.format(
        root=str(tmp_path / "ds"), key="u07")], capture_output=True, text=True)
    if "PYARROW-IMPORTS-PANDAS" in done.stdout:
        pytest.skip("this pyarrow imports pandas when it is imported")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ROWS", "50", "False", "False"], done.stdout
