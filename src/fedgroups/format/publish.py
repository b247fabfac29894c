"""Crash-safe output: build in a hidden staging directory beside OUT, then rename it into place.

A crash at any moment leaves either no OUT or the previous OUT, plus at most a staging
directory that does not open as a dataset under OUT's name; the next build removes it.
"""

from __future__ import annotations

import os
import shutil
import uuid

import psutil

from fedgroups.errors import OutputExistsError
from fedgroups.format.spec import MANIFEST_FILE

_TAG = ".fedgroups-staging-"


def _parent_and_name(out: str) -> tuple[str, str]:
    out = os.path.abspath(out)
    return os.path.dirname(out), os.path.basename(out)


def check_output(out: str, overwrite: bool) -> None:
    if os.path.exists(out):
        if not overwrite:
            what = "a grouped dataset" if os.path.exists(os.path.join(out, MANIFEST_FILE)) \
                else "a file" if os.path.isfile(out) else "a directory"
            raise OutputExistsError(
                f"{out} already exists ({what}); pass --overwrite (overwrite=True) to replace it, "
                "or choose another output path"
            )
        if os.path.isdir(out) and os.listdir(out) and \
                not os.path.exists(os.path.join(out, MANIFEST_FILE)):
            raise OutputExistsError(
                f"{out} is a non-empty directory that is not a grouped dataset; refusing to "
                "replace it even with --overwrite; remove it yourself if that is intended"
            )


def remove_stale_staging(out: str) -> list[str]:
    """Remove staging directories of earlier builds of OUT whose process is gone."""
    parent, name = _parent_and_name(out)
    removed = []
    if not os.path.isdir(parent):
        return removed
    prefix = f".{name}{_TAG}"
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        pid_text = entry[len(prefix):].split("-")[0]
        if pid_text.isdigit() and psutil.pid_exists(int(pid_text)) and int(pid_text) != os.getpid():
            continue  # another build of the same output is running
        shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        removed.append(entry)
    return removed


def make_staging(out: str) -> str:
    parent, name = _parent_and_name(out)
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f".{name}{_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    return path


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


def publish(staging: str, out: str, overwrite: bool) -> None:
    """Move a finished staging directory (manifest already inside) to OUT atomically."""
    out = os.path.abspath(out)
    _fsync_dir(staging)
    if os.path.exists(out):
        check_output(out, overwrite)
        trash = staging + "-old"
        os.rename(out, trash)  # atomic; from here OUT is absent for an instant
        os.rename(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, out)
    _fsync_dir(os.path.dirname(out))
