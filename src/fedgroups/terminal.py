"""How fedgroups prints for people: byte units, and whether to draw progress bars.

One place for both so that ``fedgroups info``, ``fedgroups stats`` and the build report
write sizes the same way, and every command decides about progress bars the same way.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """A byte count in binary units: ``512 B``, ``1.5 KiB``, ``3.0 GiB``.

    >>> human_bytes(512), human_bytes(1536), human_bytes(3 << 30)
    ('512 B', '1.5 KiB', '3.0 GiB')
    """
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def progress_enabled(requested: bool | None = None, stream: TextIO | None = None) -> bool:
    """Whether to draw progress bars.

    ``requested`` (True/False) is the caller's explicit choice (``--quiet`` gives False).
    Otherwise ``FEDGROUPS_PROGRESS=1``/``0`` decides, and without it bars are drawn only
    where someone watches: ``stream`` (stderr) is a terminal, or the code runs in a
    Jupyter kernel. A log file or a pipe gets no carriage-return redraws.
    """
    if requested is not None:
        return bool(requested)
    env = os.environ.get("FEDGROUPS_PROGRESS")
    if env is not None and env.strip() != "":
        return env.strip() not in ("0", "false", "no", "off")
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
    return "ipykernel" in sys.modules
