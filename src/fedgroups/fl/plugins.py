"""User code named in a config: ``"package.module:function"`` resolved to the callable."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fedgroups.fl.config import ConfigError


def load_callable(spec: Any, setting: str) -> Callable[..., Any]:
    """Import ``package.module`` and return its attribute ``function`` (dots allowed).

    The module must be importable from the running Python: installed, in the current
    directory when running ``python -m``, or on ``PYTHONPATH``.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"{setting}: expected 'package.module:function'; got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"{setting}: cannot import module {module_name!r} ({e}); it must be importable: "
            "installed, or its folder on PYTHONPATH (e.g. PYTHONPATH=. fedgroups train ...)"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{setting}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{setting}: {spec!r} is not callable")
    return obj
