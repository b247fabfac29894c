"""``python:MODULE:FUNCTION`` (or any callable) — the user's own function decides the group."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fedgroups.errors import KeyFunctionError, SettingError
from fedgroups.format.rows import to_dicts
from fedgroups.keys.base import KeyFunction, KeyRowError, normalise_key_array


def batched(fn: Callable[[pa.RecordBatch], Any]) -> Callable[[pa.RecordBatch], Any]:
    """Mark a key function as vectorised: it takes an Arrow batch and returns one key per row."""
    fn.__fedgroups_batched__ = True  # type: ignore[attr-defined]
    return fn


def python_values_to_keys(values: list[Any], what: str) -> pa.Array:
    """Keys returned by Python code (str, bytes or int; None for no group) → an Arrow array."""
    kinds = set()
    for row, v in enumerate(values):
        if v is None:
            continue  # no group: the engine applies the on_missing_key policy
        if isinstance(v, bool) or not isinstance(v, (str, bytes, int, np.integer)):
            raise KeyRowError(
                row, f"{what} returned {type(v).__name__} {v!r:.80}; return str, bytes or int"
            )
        if not isinstance(v, (str, bytes)) and not -(1 << 63) <= int(v) < (1 << 63):
            raise KeyRowError(row, f"{what} returned the int {int(v)}, beyond the signed 64-bit "
                                   "range of integer keys; return it as a str")
        kinds.add(str if isinstance(v, str) else bytes if isinstance(v, bytes) else int)
    if len(kinds) > 1:
        raise KeyFunctionError(f"{what} returned keys of mixed types {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop() if kinds else str
    typ = {str: pa.string(), bytes: pa.binary(), int: pa.int64()}[kind]
    return pa.array([None if v is None else int(v) for v in values] if kind is int else values,
                    type=typ)


def raised(name: str, error: BaseException) -> str:
    """What a user's key function raised, in one line. ``SystemExit`` and other
    ``BaseException`` kinds (but ``KeyboardInterrupt``) are reported like any error: a key
    function ending the process would end the build with no word of why."""
    what = f"{type(error).__name__}: {error}"
    if not isinstance(error, Exception):
        what = f"{type(error).__name__}({', '.join(repr(a) for a in error.args)})"
        if isinstance(error, SystemExit):
            what += " (a key function must return a key, not exit)"
    return f"key function {name} raised {what}"


def _import_hint(module: str, e: ImportError) -> str:
    """Why ``module`` did not import, and what to do. The current directory is not added to
    the import path on purpose: a file there named like an installed module would shadow
    it, and the key would depend on where the command runs (and Beam workers have no cwd)."""
    top = module.split(".")[0]
    if isinstance(e, ModuleNotFoundError) and e.name in (module, top):
        here = [p for p in (f"{top}.py", top) if os.path.exists(p)]
        fix = (f"{here[0]} is in the current directory, which `fedgroups` does not import "
               "from: run with PYTHONPATH=. (or install it)") if here else \
            "put its folder on PYTHONPATH (e.g. PYTHONPATH=. for the current directory) or " \
            "install it as a package"
        return f"cannot import module {module!r}: the module must be importable; {fix}"
    return f"importing module {module!r} failed: {type(e).__name__}: {e}"


@dataclass(frozen=True, kw_only=True)
class CallableKey(KeyFunction):
    """A user function: one example (dict) → key, or, if ``batched``, a batch → keys.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = CallableKey.wrap(lambda ex: ex["text"][:1])
    >>> key.keys(pa.record_batch({"text": ["ab", "cd", "ax"]}), np.arange(3)).to_pylist()
    ['a', 'c', 'a']
    """

    usage = "python:MODULE:FUNCTION"

    fn: Callable[..., Any] = field(compare=False)
    batched: bool = False

    @classmethod
    def wrap(cls, fn: Callable[..., Any], spec: str = "python-callable") -> CallableKey:
        """A callable as a key function (vectorised if marked with :func:`batched`)."""
        return cls(spec=spec, fn=fn, batched=bool(getattr(fn, "__fedgroups_batched__", False)))

    @classmethod
    def from_spec(cls, spec: str, args: str) -> CallableKey:
        module, _, fname = args.partition(":")
        if not (module and fname):
            raise SettingError(f"key {spec!r}: use {cls.usage}")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise SettingError(f"key {spec!r}: {_import_hint(module, e)}") from e
        except Exception as e:  # the user's module failed while importing (syntax, raise)
            raise SettingError(f"key {spec!r}: importing module {module!r} failed: "
                               f"{type(e).__name__}: {e}") from e
        if not callable(getattr(mod, fname, None)):
            raise SettingError(f"key {spec!r}: module {module} ({mod.__file__}) has no function "
                               f"{fname!r}")
        return cls.wrap(getattr(mod, fname), spec)

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        if self.batched:
            try:
                out = self.fn(batch)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # the user's code, even sys.exit(): report, don't exit
                raise KeyRowError(0, raised(name, e)) from e
            if isinstance(out, (pa.Array, pa.ChunkedArray)):
                arr = out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
                arr = normalise_key_array(arr, f"key function {name}")
            else:
                arr = python_values_to_keys(list(out), f"key function {name}")
            if len(arr) != batch.num_rows:
                raise KeyFunctionError(
                    f"key function {name} returned {len(arr)} keys for {batch.num_rows} examples"
                )
            return arr
        rows = to_dicts(batch)
        values = []
        for row, example in enumerate(rows):
            try:
                values.append(self.fn(example))
            except KeyboardInterrupt:
                raise
            except BaseException as e:
                raise KeyRowError(row, raised(name, e)) from e
        return python_values_to_keys(values, f"key function {name}")

    def describe(self) -> dict[str, Any]:
        name = getattr(self.fn, "__module__", "?") + ":" + getattr(self.fn, "__qualname__", "?")
        return {"spec": self.spec, "callable": name, "batched": self.batched}
