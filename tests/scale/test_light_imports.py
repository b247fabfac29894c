"""`import fedgroups` and `fedgroups --help` must not pay for numpy, pyarrow or torch."""

from __future__ import annotations

import subprocess
import sys

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
