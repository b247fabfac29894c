"""The KEYSPEC grammar: ``kind:ARGS`` → a key function, one registry entry per kind.

Adding a key function is one new file (a :class:`KeyFunction` subclass with ``usage`` and
``from_spec``, and a runnable example in its docstring) and one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fedgroups.errors import SettingError
from fedgroups.keys.base import KeyFunction
from fedgroups.keys.dirichlet import DirichletLabelKey
from fedgroups.keys.field import FieldKey
from fedgroups.keys.hashed import HashKey
from fedgroups.keys.iid import IidKey
from fedgroups.keys.pathological import LabelShardsKey
from fedgroups.keys.power_law import PowerLawKey
from fedgroups.keys.python_function import CallableKey
from fedgroups.keys.super_group import SuperGroupKey
from fedgroups.keys.url_host import UrlHostKey

KEYSPECS: dict[str, type[KeyFunction]] = {
    "field": FieldKey,
    "url-host": UrlHostKey,
    "hash": HashKey,
    "iid": IidKey,
    "python": CallableKey,
    "dirichlet": DirichletLabelKey,
    "pathological": LabelShardsKey,
    "power-law": PowerLawKey,
    "super": SuperGroupKey,
}

KEYSPEC_HELP = " | ".join(cls.usage for cls in KEYSPECS.values())


def parse_key(key: str | Callable[..., Any] | KeyFunction) -> KeyFunction:
    """A KEYSPEC string, a callable (example → key) or a KeyFunction → KeyFunction."""
    if isinstance(key, KeyFunction):
        return key
    if callable(key):
        return CallableKey.wrap(key)
    if not isinstance(key, str):
        raise SettingError(f"key must be a KEYSPEC string or a callable, got {type(key).__name__}")
    kind, _, args = key.partition(":")
    cls = KEYSPECS.get(kind)
    if cls is None:
        raise SettingError(f"key {key!r} is not a KEYSPEC; use one of: {KEYSPEC_HELP}")
    return cls.from_spec(key, args)
