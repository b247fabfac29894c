"""The publish protocol killed at every step (docs/format.md, "Publish protocol").

Each case builds an "old" dataset at OUT, then runs an ``--overwrite`` build of a "new"
one in a subprocess that dies (``os._exit``) at one step, on both paths (the atomic
exchange and the two-rename fallback). At the instant of death OUT must hold a complete
dataset, old or new (the fallback's one documented window excepted, where the old one is
complete beside OUT); after the recovery every build runs first, OUT must hold the old
dataset if death came before the switch and the new one after, verify must pass, and
nothing may be left beside OUT.
"""

from __future__ import annotations

import os

import pytest

import fedgroups as fg
from fedgroups.errors import OutputExistsError, SettingError
from fedgroups.format.publish import FAULT_EXIT, STEPS, is_complete, recover
from fedgroups.format.verify import verify

from .helpers import leftovers, rows, run_build, run_publish, tags, write_jsonl

BUILD_STEPS = [s for s in STEPS if not s.startswith("recover:")]
# Steps after which OUT holds the new dataset.
SWITCHED = {True: {"publish:exchanged", "publish:old-unlisted", "publish:done"},
            False: {"publish:placed-new", "publish:old-unlisted", "publish:done"}}
NOT_ON_PATH = {True: {"publish:moved-old", "publish:placed-new"}, False: {"publish:exchanged"}}


def _old(tmp_path) -> tuple[str, str]:
    out = str(tmp_path / "out")
    fg.build(rows("old"), "field:user", out, workers=1, progress=False)
    return out, write_jsonl(str(tmp_path / "new.jsonl"), rows("new"))


def _sound(out: str, tag: str) -> None:
    assert is_complete(out), os.listdir(os.path.dirname(out))
    assert verify(out) == []
    assert tags(out) == {tag}


@pytest.mark.parametrize("step", [s for s in BUILD_STEPS if s.startswith("finish:")])
def test_kill_while_finishing_a_build(tmp_path, step):
    out, new = _old(tmp_path)
    r = run_build(new, out, fault=step)
    assert r.returncode == FAULT_EXIT, r.stderr
    _sound(out, "old")
    assert len(leftovers(out)) == 1
    recover(out)
    _sound(out, "old")
    assert leftovers(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("step", [s for s in BUILD_STEPS if s.startswith("publish:")])
def test_kill_at_each_step_of_an_overwrite(tmp_path, step, exchange):
    out, _ = _old(tmp_path)
    prepared = str(tmp_path / "prepared")
    fg.build(rows("new"), "field:user", prepared, workers=1, progress=False)
    r = run_publish(prepared, out, fault=step, exchange=exchange)
    if step in NOT_ON_PATH[exchange]:
        assert r.returncode == 0, r.stderr
        _sound(out, "new")
        return
    assert r.returncode == FAULT_EXIT, r.stderr
    switched = step in SWITCHED[exchange]
    if step == "publish:moved-old":  # the fallback's window: OUT absent, old one aside
        assert not os.path.lexists(out)
        aside = [e for e in leftovers(out) if ".fedgroups-old-" in e]
        assert len(aside) == 1 and is_complete(os.path.join(os.path.dirname(out), aside[0]))
    else:
        _sound(out, "new" if switched else "old")
    done = recover(out)
    _sound(out, "new" if switched else "old")
    assert leftovers(out) == []
    if step == "publish:moved-old":
        assert any(d.startswith("restored") for d in done)


@pytest.mark.parametrize("step", ["recover:restored", "recover:unlisted"])
def test_kill_of_the_recovering_build(tmp_path, step):
    out, new = _old(tmp_path)
    r = run_build(new, out, fault="publish:moved-old", exchange=False)
    assert r.returncode == FAULT_EXIT and not os.path.lexists(out)
    r = run_build(new, out, fault=step)  # the next build recovers first, and dies there
    assert r.returncode == FAULT_EXIT, r.stderr
    _sound(out, "old")  # restored before it died, in both cases
    r = run_build(new, out)  # the build after that finishes the recovery, then builds
    assert r.returncode == 0, r.stderr
    assert "removed" in r.stderr or step == "recover:restored"
    _sound(out, "new")
    assert leftovers(out) == []


def test_a_killed_build_is_cleaned_by_a_build_to_another_output(tmp_path):
    out, new = _old(tmp_path)
    r = run_build(new, out, fault="finish:index-written")
    assert r.returncode == FAULT_EXIT and len(leftovers(out)) == 1
    other = str(tmp_path / "other")
    r = run_build(new, other, overwrite=False)
    assert r.returncode == 0, r.stderr
    assert f"removed {os.path.dirname(out)}{os.sep}.out.fedgroups-staging-" in r.stderr
    assert "MiB), left by a killed build" in r.stderr
    assert leftovers(out) == []
    _sound(out, "old")
    _sound(other, "new")


def test_a_complete_leftover_is_never_deleted_while_out_is_not_a_dataset(tmp_path):
    out, new = _old(tmp_path)
    r = run_build(new, out, fault="publish:moved-old", exchange=False)
    assert r.returncode == FAULT_EXIT
    os.makedirs(out)  # someone made OUT meanwhile: nothing may be restored over it
    (tmp_path / "out" / "notes.txt").write_text("mine")
    done = recover(out)
    assert sum(d.startswith("kept") for d in done) == 2  # the old one and the new one
    assert all(is_complete(os.path.join(tmp_path, e)) for e in leftovers(out))
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_regular_file(tmp_path):
    path = tmp_path / "out"
    path.write_text("precious")
    with pytest.raises(OutputExistsError, match="is a file, not a grouped dataset"):
        fg.build(rows("new"), "field:user", str(path), overwrite=True, progress=False)
    assert path.read_text() == "precious"
    assert leftovers(str(path)) == []


def test_output_in_a_folder_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingError, match="cannot create a folder in"):
        fg.build(rows("new"), "field:user", str(tmp_path / "file" / "out"), progress=False)


def test_overwrite_through_both_paths_leaves_nothing(tmp_path):
    out, new = _old(tmp_path)
    for exchange in (True, False):
        r = run_build(new, out, exchange=exchange)
        assert r.returncode == 0, r.stderr
        _sound(out, "new")
        assert leftovers(out) == []


def test_a_leftover_from_another_machine_is_left_until_stale(tmp_path):
    out, _ = _old(tmp_path)
    other = tmp_path / ".out.fedgroups-staging-1-h0badc0de-12345678"  # PID 1 of another host
    other.mkdir()
    (other / "part.parquet").write_bytes(b"being written elsewhere")
    assert recover(out) == [] and other.exists()  # its PID means nothing here
    day_ago = os.path.getmtime(other) - 2 * 24 * 3600
    for p in (other / "part.parquet", other):
        os.utime(p, (day_ago, day_ago))
    assert any("removed" in d for d in recover(out)) and not other.exists()


@pytest.mark.slow
def test_random_kill_9_during_overwrites(tmp_path):
    """SIGKILL at random moments of an --overwrite build (seeded): OUT always holds the old
    or the new dataset, complete, and the next recovery leaves nothing beside it."""
    import random
    import signal
    import subprocess
    import sys
    import time

    out, _ = _old(tmp_path)
    new = write_jsonl(str(tmp_path / "new.jsonl"), rows("new", 20_000))
    code = ("import sys, fedgroups as fg; fg.build(sys.argv[1], 'field:user', sys.argv[2], "
            "overwrite=True, workers=2, num_partitions=4, progress=False)")
    rng = random.Random(14)
    seen = set()
    for _ in range(6):
        p = subprocess.Popen([sys.executable, "-c", code, new, out], stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 4.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        recover(out)
        assert is_complete(out) and verify(out) == []
        seen.add(frozenset(tags(out)))
        assert seen <= {frozenset({"old"}), frozenset({"new"})}
        assert leftovers(out) == []


def test_a_concurrent_build_in_the_same_process_keeps_its_staging(tmp_path):
    from fedgroups.format.publish import make_staging
    staging = make_staging(str(tmp_path / "a"))  # as a build running in another thread
    fg.build(rows("new"), "field:user", str(tmp_path / "b"), workers=1, progress=False)
    assert os.path.isdir(staging)  # the build of b, in the same folder, left it alone
    os.rmdir(staging)


def test_a_leftover_of_the_old_protocol_is_restored(tmp_path):
    out, _ = _old(tmp_path)
    os.rename(out, str(tmp_path / ".out.fedgroups-staging-999999-abcdef12-old"))  # killed
    assert any(d.startswith("restored") for d in recover(out))
    _sound(out, "old")
