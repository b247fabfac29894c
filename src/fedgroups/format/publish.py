"""Crash-safe output: build in a hidden folder beside OUT, then swap it into place.

The protocol (docs/format.md, "Publish protocol") keeps a complete dataset reachable at
OUT at every instant of an ``--overwrite``: the finished staging folder and OUT are
exchanged in one atomic ``renameat2(RENAME_EXCHANGE)``; only then is the old dataset
deleted, manifest first, so a half-deleted folder is never mistaken for a dataset. Where
the kernel or file system cannot exchange, two renames are used and :func:`recover`
puts the old dataset back if a crash fell between them.

Every folder a build leaves beside OUT is named ``.NAME.fedgroups-staging-PID-HOST-ID`` (a
build in progress, or after the exchange the old dataset) or ``.NAME.fedgroups-old-PID-HOST-ID``
(the old dataset moved aside by the two-rename path). :func:`recover` — run by every build
before it starts — deals with those of dead processes for every NAME in the folder: it
restores a complete old one (``-old-``) to a missing NAME, and deletes the rest — a staging
folder is never published by a recovery, even complete: its build never switched, so
rerunning it must find NAME as it was. A complete leftover is kept only while NAME holds
something that is not a complete dataset (someone put it there).

``FEDGROUPS_TEST_FAULT=STEP`` kills the process (``os._exit``) when it reaches STEP (one
of :data:`STEPS`), and ``FEDGROUPS_TEST_NO_EXCHANGE=1`` forces the two-rename path: the
fault-injection tests use them, as SQLite's tests crash its commit at each step.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import socket
import sys
import time
import uuid

import psutil

from fedgroups.errors import FedGroupsError, OutputExistsError, SettingError
from fedgroups.format.layout import is_dataset, manifest_path

_STAGING = ".fedgroups-staging-"
_OLD = ".fedgroups-old-"
OTHER_HOST_STALE_SECONDS = 24 * 3600
_MINE: set[str] = set()  # staging folders this process made (its builds may run in threads)
FAULT_ENV = "FEDGROUPS_TEST_FAULT"
FAULT_EXIT = 77
# Every point where a test may kill a build or a recovery, in the order they are reached.
STEPS = (
    "finish:index-written",  # staging has shards and index, no manifest
    "finish:manifest-written",  # staging is a complete dataset
    "publish:synced",  # its files and folder are on disk; OUT untouched
    "publish:exchanged",  # OUT is the new dataset; the old one is in the staging folder
    "publish:moved-old",  # (two-rename path) the old dataset is aside; OUT is absent
    "publish:placed-new",  # (two-rename path) OUT is the new dataset
    "publish:old-unlisted",  # the old dataset's manifest is gone; its files remain
    "publish:done",  # the old dataset is gone
    "recover:restored",  # a recovery put a complete dataset back at OUT
    "recover:unlisted",  # a recovery removed a leftover's manifest, not yet its files
)


def fault_point(step: str) -> None:
    """Die here if a test asked to (see module docstring)."""
    if os.environ.get(FAULT_ENV) == step:
        sys.stderr.flush()
        os._exit(FAULT_EXIT)


def _say(message: str) -> None:
    print(f"fedgroups: {message}", file=sys.stderr, flush=True)


def _parent_and_name(out: str) -> tuple[str, str]:
    out = os.path.abspath(out)
    return os.path.dirname(out), os.path.basename(out)


def is_complete(path: str) -> bool:
    """Does ``path`` hold a dataset whose manifest reads and whose files are all there
    with the sizes the manifest gives (no checksums: that is ``verify``)?"""
    from fedgroups.format.manifest import read_manifest
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    try:
        m = read_manifest(path)
        files = [m["index"], *m["shards"]]
        return all(os.path.getsize(os.path.join(path, f["path"])) == f["file_bytes"]
                   for f in files)
    except (FedGroupsError, OSError):
        return False


def check_output(out: str, overwrite: bool) -> None:
    """Recover what killed builds left beside OUT, then check that OUT may be written."""
    recover(out)
    _check_replaceable(out, overwrite)


def _check_replaceable(out: str, overwrite: bool) -> None:
    if not os.path.lexists(out):
        return
    if os.path.islink(out):
        raise OutputExistsError(
            f"{out} is a symbolic link (to {os.path.realpath(out)}); a build does not "
            "replace a link, with or without --overwrite: build to the folder it points to, "
            "or remove the link first")
    dataset = os.path.isdir(out) and is_dataset(out)
    if not overwrite:
        what = "a grouped dataset" if dataset else "a directory" if os.path.isdir(out) \
            else "a file"
        raise OutputExistsError(
            f"{out} already exists ({what}); pass --overwrite (overwrite=True) to replace it, "
            "or choose another output path")
    if not os.path.isdir(out):
        raise OutputExistsError(
            f"{out} is a file, not a grouped dataset; refusing to replace it even with "
            "--overwrite; remove it yourself if that is intended")
    if not dataset and os.listdir(out):
        raise OutputExistsError(
            f"{out} is a non-empty directory that is not a grouped dataset; refusing to "
            "replace it even with --overwrite; remove it yourself if that is intended")


def _leftovers(parent: str) -> dict[str, list[tuple[str, str]]]:
    """Folders builds left in ``parent``: NAME -> [(folder, owner "PID-HOST")]."""
    found: dict[str, list[tuple[str, str]]] = {}
    try:
        entries = os.listdir(parent)
    except OSError:
        return found
    for entry in sorted(entries):
        for tag in (_STAGING, _OLD):
            at = entry.find(tag)
            if entry.startswith(".") and at > 1:
                found.setdefault(entry[1:at], []).append((entry, entry[at + len(tag):]))
                break
    return found


def _host() -> str:
    """This machine, as "h" and 8 hex digits in the names of the folders its builds make."""
    return "h" + hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner_alive(owner: str, path: str) -> bool:
    """May the build that made ``path`` still run? ``owner`` is "PID-HOST-ID" (or the
    older "PID-ID"). A PID says nothing about another machine's processes (a shared
    folder): a folder from elsewhere counts as abandoned only once untouched for a day.
    This process's own PID counts as alive only for the folders it made (another build
    running in it); otherwise the PID was reused after the one that made it died."""
    parts = owner.split("-")
    pid = int(parts[0]) if parts[0].isdigit() else None
    if len(parts) >= 3 and parts[1].startswith("h") and parts[1] != _host():
        return time.time() - _newest_mtime(path) < OTHER_HOST_STALE_SECONDS
    if pid == os.getpid():
        return os.path.basename(path) in _MINE
    return pid is not None and psutil.pid_exists(pid)


def recover(out: str) -> list[str]:
    """Deal with the folders that dead builds left beside OUT (for every name in OUT's
    folder); return what was done, also said on stderr."""
    parent, _ = _parent_and_name(out)
    done: list[str] = []
    for name, entries in _leftovers(parent).items():
        dead = [e for e, owner in entries if not _owner_alive(owner, os.path.join(parent, e))]
        if dead:
            done += _recover_name(parent, name, dead)
    for line in done:
        _say(line)
    return done


def _is_aside(entry: str) -> bool:
    """Is this leftover an old dataset a publish moved aside (``A``; the protocol before
    host names put it at the staging name plus ``-old``), rather than a build's own
    staging folder (``S``)?"""
    return _OLD in entry or entry.endswith("-old")


def _recover_name(parent: str, name: str, dead: list[str]) -> list[str]:
    """Recovery rules R1 and R2 (docs/format.md) for the dead leftovers of one NAME."""
    done: list[str] = []
    target = os.path.join(parent, name)
    if not os.path.lexists(target):
        # R1: only a dataset a publish moved aside goes back. A staging folder, complete or
        # not, is a build that never switched: it was not published, so it is not now.
        aside = [e for e in dead if _is_aside(e) and is_complete(os.path.join(parent, e))]
        aside.sort(key=lambda e: -_mtime(os.path.join(parent, e)))
        if aside:
            os.rename(os.path.join(parent, aside[0]), target)
            _fsync_dir(parent)
            fault_point("recover:restored")
            done.append(f"restored {target} from {aside[0]}, left by a build that was "
                        "killed while publishing")
            dead.remove(aside[0])
    # R2: keep a complete leftover only while something that is not a dataset sits at NAME
    keep_complete = os.path.lexists(target) and not is_complete(target)
    for entry in dead:
        path = os.path.join(parent, entry)
        if keep_complete and is_complete(path):
            done.append(f"kept {path}: a complete dataset, while {target} is not one; "
                        "move it into place or delete it yourself")
            continue
        size = _tree_bytes(path)
        _remove_tree(path)
        done.append(f"removed {path} ({size / 2**20:.1f} MiB), left by a killed build")
    return done


def remove_stale_staging(out: str) -> list[str]:
    """Kept for the engines: the same as :func:`recover`."""
    return recover(out)


def make_staging(out: str) -> str:
    parent, name = _parent_and_name(out)
    try:
        os.makedirs(parent, exist_ok=True)
        path = os.path.join(parent, f".{name}{_STAGING}{os.getpid()}-{_host()}-"
                                    f"{uuid.uuid4().hex[:8]}")
        os.makedirs(path)
        _MINE.add(os.path.basename(path))
    except OSError as e:
        raise SettingError(
            f"{out}: cannot create a folder in {parent} ({e.strerror or e}); the build writes "
            "beside OUT first — choose an output path in a folder you can write to") from e
    return path


def publish(staging: str, out: str, overwrite: bool) -> None:
    """Put a finished staging folder (manifest inside) at OUT; see the module docstring.

    An exception at any step (an OSError, Ctrl-C) leaves OUT as a kill there would, never
    absent when it held a dataset: the two-rename path puts the old dataset back, and once
    OUT holds the new one the old one is deleted before the exception goes on."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    _fsync_tree(staging)
    fault_point("publish:synced")
    if not os.path.lexists(out):
        os.rename(staging, out)  # atomic; OUT goes from absent to complete
        _fsync_dir(parent)
        fault_point("publish:done")
        return
    _check_replaceable(out, overwrite)
    if _exchange(staging, out):
        _fsync_dir(parent)
        old, step = staging, "publish:exchanged"  # the old dataset now has S's name
    else:
        old, step = _two_renames(staging, out), "publish:placed-new"
    try:
        fault_point(step)
    finally:
        _remove_tree(old, fault="publish:old-unlisted")
    fault_point("publish:done")


def _two_renames(staging: str, out: str) -> str:
    """Move OUT aside, then the staging folder to OUT; return where the old dataset is.
    An exception between the two puts the old dataset back at OUT."""
    parent = os.path.dirname(out)
    old = os.path.join(parent, os.path.basename(staging).replace(_STAGING, _OLD))
    os.rename(out, old)
    _fsync_dir(parent)
    try:
        fault_point("publish:moved-old")
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        _fsync_dir(parent)
        raise
    _fsync_dir(parent)
    return old


def _remove_tree(path: str, fault: str = "recover:unlisted") -> None:
    """Delete a dataset folder manifest first: a half-deleted folder is never a dataset."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    manifest = manifest_path(path)
    if os.path.exists(manifest):
        os.remove(manifest)
        _fsync_dir(path)
    try:
        fault_point(fault)
    finally:  # an exception here still deletes the files (a kill leaves them to recovery)
        shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux renameat2); False where that is not available."""
    if os.environ.get("FEDGROUPS_TEST_NO_EXCHANGE") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this file system cannot exchange: two renames instead
    raise OSError(err, os.strerror(err), b)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    """Every file and folder of a finished build on disk before it is published."""
    for d, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(d)


def _tree_bytes(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


def _newest_mtime(path: str) -> float:
    newest = _mtime(path)
    for d, _, files in os.walk(path):
        newest = max([newest, _mtime(d), *(_mtime(os.path.join(d, f)) for f in files)])
    return newest


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0
