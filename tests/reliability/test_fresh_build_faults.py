"""A build stopped at any step — killed, or by an exception — leaves OUT either not a
dataset (the reader refuses it, and rerunning the same command without --overwrite
succeeds and removes what the stopped build left) or the finished, valid dataset.

Kills use ``FEDGROUPS_TEST_FAULT`` in a subprocess (``os._exit`` at the step); exceptions
replace ``fault_point`` in this process, at the same steps.
"""

from __future__ import annotations

import os

import pytest

import fedgroups as fg
import fedgroups.format.finish as finish_module
import fedgroups.format.publish as publish_module
from fedgroups.errors import NotADatasetError, OutputExistsError
from fedgroups.format.publish import FAULT_EXIT, STEPS, is_complete
from fedgroups.format.verify import verify

from .helpers import leftovers, rows, run_build, tags, write_jsonl

BUILD_STEPS = [s for s in STEPS if not s.startswith("recover:")]
# Steps a build without an existing OUT passes, in order; after the last one OUT is new.
FRESH_STEPS = ["finish:index-written", "finish:manifest-written", "publish:synced",
               "publish:done"]


def _sound(out: str, tag: str) -> None:
    assert is_complete(out)
    assert verify(out) == []
    assert tags(out) == {tag}


def _not_a_dataset(out: str) -> None:
    with pytest.raises(NotADatasetError):
        fg.open(out)


@pytest.mark.parametrize("step", FRESH_STEPS)
def test_a_killed_fresh_build_is_unpublished_or_finished(tmp_path, step):
    out = str(tmp_path / "out")
    new = write_jsonl(str(tmp_path / "new.jsonl"), rows("new"))
    r = run_build(new, out, fault=step, overwrite=False)
    assert r.returncode == FAULT_EXIT, r.stderr
    if step == "publish:done":  # the switch happened: finished and valid
        _sound(out, "new")
        assert leftovers(out) == []
        return
    _not_a_dataset(out)
    r = run_build(new, out, overwrite=False)  # the same command again
    assert r.returncode == 0, r.stderr
    assert "removed" in r.stderr and "left by a killed build" in r.stderr
    assert "restored" not in r.stderr
    _sound(out, "new")
    assert leftovers(out) == []


def _raise_at(monkeypatch, step: str) -> None:
    def fault_point(at: str) -> None:
        if at == step:
            raise KeyboardInterrupt(f"stopped at {at}")
    monkeypatch.setattr(publish_module, "fault_point", fault_point)
    monkeypatch.setattr(finish_module, "fault_point", fault_point)


@pytest.mark.parametrize("step", FRESH_STEPS)
def test_an_exception_in_a_fresh_build_leaves_it_unpublished_or_finished(tmp_path, monkeypatch,
                                                                         step):
    out = str(tmp_path / "out")
    _raise_at(monkeypatch, step)
    with pytest.raises(KeyboardInterrupt):
        fg.build(rows("new"), "field:user", out, workers=1, progress=False)
    assert leftovers(out) == []  # the build cleaned up after itself on the way out
    if step == "publish:done":
        _sound(out, "new")
        return
    assert not os.path.lexists(out)
    monkeypatch.undo()
    fg.build(rows("new"), "field:user", out, workers=1, progress=False)
    _sound(out, "new")


SWITCHED = {"publish:exchanged", "publish:placed-new", "publish:old-unlisted", "publish:done"}


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("step", BUILD_STEPS)
def test_an_exception_in_an_overwrite_never_leaves_out_without_a_dataset(
        tmp_path, monkeypatch, step, exchange):
    out = str(tmp_path / "out")
    fg.build(rows("old"), "field:user", out, workers=1, progress=False)
    if not exchange:
        monkeypatch.setenv("FEDGROUPS_TEST_NO_EXCHANGE", "1")
    _raise_at(monkeypatch, step)
    on_path = step not in ({"publish:moved-old", "publish:placed-new"} if exchange
                           else {"publish:exchanged"})
    if on_path:
        with pytest.raises(KeyboardInterrupt):
            fg.build(rows("new"), "field:user", out, workers=1, progress=False,
                     overwrite=True)
    else:
        fg.build(rows("new"), "field:user", out, workers=1, progress=False, overwrite=True)
    _sound(out, "new" if step in SWITCHED or not on_path else "old")
    assert leftovers(out) == []


def test_overwrite_refuses_a_symlinked_out(tmp_path):
    real = str(tmp_path / "real")
    fg.build(rows("old"), "field:user", real, workers=1, progress=False)
    link = str(tmp_path / "link")
    os.symlink(real, link)
    for overwrite in (True, False):
        with pytest.raises(OutputExistsError, match="is a symbolic link.*does not replace a link"):
            fg.build(rows("new"), "field:user", link, workers=1, progress=False,
                     overwrite=overwrite)
    assert os.path.islink(link) and os.readlink(link) == real
    _sound(real, "old")
    assert leftovers(link) == []
    fg.build(rows("new"), "field:user", real, workers=1, progress=False, overwrite=True)
    _sound(real, "new")  # building to the folder it points to is the way
    assert tags(link) == {"new"}
