"""The pydocs recipe on a small distribution made in the test, and on an installed one."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import fedgroups as fg
from fedgroups.errors import SettingError
from fedgroups.recipes import build_recipe, get_recipe

LONG = "x" * 40  # docstrings shorter than min_chars (40) are left out

FILES = {
    "fakepkg/__init__.py": f'"""Fake package: the module docstring. {LONG}"""\n\n'
                           'def f():\n    """Too short."""\n',
    "fakepkg/sub/mod.py": f'class A:\n    """Class A does things. {LONG}"""\n\n'
                          f'    def m(self):\n        """Method m of A. {LONG}"""\n',
    "fakepkg/tests/test_a.py": f'"""A test module, left out. {LONG}"""\n',
    "fakepkg/old.py": f'"""Python 2 syntax below. {LONG}"""\nprint "hello"\n',
    "fakepkg-data/notes.py": f'"""Not importable (dash in the folder). {LONG}"""\n',
}
DESCRIPTION = "Fakepkg\n=======\n\nFirst paragraph of the README.\n\n\nSecond one.\n"


def make_site(root: Path) -> Path:
    site = root / "site"
    for rel, text in FILES.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    info = site / "fakepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n\n" + DESCRIPTION)
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in FILES)
                                 + "fakepkg-1.0.dist-info/METADATA,,\n")
    return site


def groups(path: Path) -> dict[str, list[dict]]:
    ds = fg.open(path)
    return {k: list(ds[k]) for k in sorted(ds.keys())}


def test_groups_by_package_and_description(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    build_recipe("pydocs", tmp_path / "out", options={"paths": str(site)}, progress=False)
    got = groups(tmp_path / "out")
    assert {k: [ex["text"] for ex in v] for k, v in got.items()} == {
        "fakepkg": [f"Fake package: the module docstring. {LONG}"],
        "fakepkg.sub": [f"Class A does things. {LONG}", f"Method m of A. {LONG}"],
        "fakepkg (description)": ["Fakepkg\n=======", "First paragraph of the README.",
                                  "Second one."],
    }
    ex = got["fakepkg.sub"][0]
    assert (ex["dist"], ex["version"], ex["path"], ex["kind"]) == (
        "fakepkg", "1.0", "fakepkg/sub/mod.py", "docstring")
    manifest = fg.open(tmp_path / "out").manifest
    assert "fakepkg" in str(manifest)


def test_group_by_distribution_and_min_chars(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    build_recipe("pydocs", tmp_path / "out", progress=False,
                 options={"paths": str(site), "group": "distribution", "min_chars": "5"})
    got = groups(tmp_path / "out")
    assert list(got) == ["fakepkg"]
    texts = [ex["text"] for ex in got["fakepkg"]]
    assert "Too short." in texts and len(texts) == 3 + 4


def test_bad_options_name_the_setting(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    recipe = get_recipe("pydocs")
    with pytest.raises(SettingError, match="no-such-dist"):
        recipe.build_args(distributions="fakepkg,no-such-dist", paths=str(site))
    with pytest.raises(SettingError, match="group="):
        recipe.build_args(group="module")
    with pytest.raises(SettingError, match="min_chars"):
        recipe.build_args(min_chars="many")


def test_installed_distribution_matches_inspect(tmp_path: Path) -> None:
    """A real installed package: a class's docstring as ``inspect`` sees it is an example
    of its package's group, and the build reads no test suite."""
    import packaging.version

    build_recipe("pydocs", tmp_path / "out", options={"distributions": "packaging"},
                 progress=False)
    got = groups(tmp_path / "out")
    assert "packaging" in got and "packaging (description)" in got
    assert inspect.getdoc(packaging.version.Version) in [ex["text"] for ex in got["packaging"]]
    assert all(ex["dist"] == "packaging" for v in got.values() for ex in v)
