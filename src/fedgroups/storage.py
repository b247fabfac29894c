"""Where files live: local paths, or remote URLs (``gs://``, ``s3://``, …) through fsspec."""

from __future__ import annotations

import shutil
from typing import Any

from fedgroups.errors import SettingError


def is_remote(path: str) -> bool:
    """True for a URL with a scheme other than ``file://`` (read and written through fsspec)."""
    return "://" in path and not path.startswith("file://")


def filesystem(path: str) -> Any:
    """The fsspec filesystem of a remote URL (a clear error naming the package to install)."""
    import fsspec
    try:
        return fsspec.core.url_to_fs(path)[0]
    except (ImportError, ValueError) as e:
        raise SettingError(
            f"{path}: no filesystem for this URL ({e}); install its fsspec package on the "
            "driver and the workers (gcsfs for gs://, s3fs for s3://)") from e


def upload(local: str, remote: str) -> None:
    """Copy one finished local file to remote storage (whole-object write: no partial file)."""
    fs = filesystem(remote)
    with open(local, "rb") as src, fs.open(remote, "wb") as dst:
        shutil.copyfileobj(src, dst, 8 << 20)
