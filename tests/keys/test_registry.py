"""The KEYSPEC registry: one entry per kind, each with its usage, parser and a runnable example."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

from fedgroups.keys import KEYSPEC_HELP, KEYSPECS, parse_key
from fedgroups.keys.base import KeyFunction

SPECS = {"field": "field:user", "url-host": "url-host:url", "hash": "hash:4:user",
         "iid": "iid:4:1", "python": "python:os.path:basename", "dirichlet": "dirichlet:4:0.5:y:2",
         "pathological": "pathological:4:1:y:2", "power-law": "power-law:4:1.5",
         "super": "super:3:user:1"}


def test_every_kind_parses_to_its_class_and_is_in_the_help() -> None:
    assert set(SPECS) == set(KEYSPECS)
    for kind, cls in KEYSPECS.items():
        key = parse_key(SPECS[kind])
        assert type(key) is cls and key.spec == SPECS[kind]
        assert cls.usage.startswith(f"{kind}:") and cls.usage in KEYSPEC_HELP


@pytest.mark.parametrize("kind", sorted(KEYSPECS))
def test_each_key_function_has_a_runnable_example(kind: str) -> None:
    cls = KEYSPECS[kind]
    assert "Examples" in (cls.__doc__ or ""), f"{cls.__name__} has no example"
    module = importlib.import_module(cls.__module__)
    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_random_partitioners_have_distinct_tags() -> None:
    tags = [cls.tag for cls in KEYSPECS.values() if hasattr(cls, "tag")]
    assert len(tags) >= 4 and len(set(tags)) == len(tags)


def test_a_new_key_function_is_one_class_and_one_entry(monkeypatch) -> None:
    from dataclasses import dataclass

    import numpy as np
    import pyarrow as pa

    @dataclass(frozen=True, kw_only=True)
    class ConstantKey(KeyFunction):
        usage = "const:VALUE"
        value: str

        @classmethod
        def from_spec(cls, spec: str, args: str) -> KeyFunction:
            return cls(spec=spec, value=args, columns=())

        def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
            return pa.array([self.value] * batch.num_rows)

    monkeypatch.setitem(KEYSPECS, "const", ConstantKey)
    assert parse_key("const:all").keys(pa.record_batch({"x": [1, 2]}), np.arange(2)).to_pylist() \
        == ["all", "all"]


def test_the_key_modules_import_in_any_order() -> None:
    """No import circle: each module imports alone, in a fresh interpreter."""
    modules = sorted({cls.__module__ for cls in KEYSPECS.values()} | {
        "fedgroups.keys.functions", "fedgroups.keys.partitioners",
        "fedgroups.keys.partition_common", "fedgroups.keys.registry"})
    for name in modules:
        code = f"import sys; sys.modules.pop('fedgroups.keys', None); import {name}"
        subprocess.run([sys.executable, "-c", code], check=True)
