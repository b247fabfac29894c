"""What every key function shares: the base class, the row error, and KEYSPEC helpers.

A key function maps an Arrow batch of examples to one group key per example. It is
deterministic; random ones take a seed and hash the example's ordinal (its position in the
source), so any engine with any number of workers gives the same keys.

A KEYSPEC (``kind:ARGS``) names one through the registry in ``keys/registry.py``: each key
class says how it is written (``usage``) and reads its arguments (``from_spec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from fedgroups.errors import KeyFunctionError, SettingError


class KeyRowError(Exception):
    """A key function failed on one row of a batch; the engine adds the file and row."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


@dataclass(frozen=True, kw_only=True)
class KeyFunction:
    """Base: subclasses implement ``keys(batch, ordinals) -> pa.Array``.

    A subclass reachable from a KEYSPEC also sets ``usage`` (e.g. ``"hash:N:FIELD"``) and
    implements ``from_spec(spec, args)``, where ``args`` is what follows ``kind:``.
    """

    usage: ClassVar[str] = ""

    spec: str
    columns: tuple[str, ...] | None = None  # columns it reads; None means all

    @classmethod
    def from_spec(cls, spec: str, args: str) -> KeyFunction:
        raise NotImplementedError(f"{cls.__name__} has no KEYSPEC")

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def check_columns(self, schema: pa.Schema, where: str) -> None:
        for name in self.columns or ():
            if name not in schema.names:
                raise SettingError(missing_column_message(self.spec, name, schema, where))
            t = schema.field(name).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                    or pa.types.is_large_binary(t) or pa.types.is_integer(t)
                    or pa.types.is_null(t) or pa.types.is_string_view(t)):
                raise SettingError(
                    f"key {self.spec!r}: column {name!r} has type {t}; a key column must hold "
                    "strings, bytes or integers (use a python: key function to convert)"
                )


def missing_column_message(spec: str, name: str, schema: pa.Schema, where: str) -> str:
    """One line: the key, the column it lacks, the input, its columns and a near name."""
    import difflib

    near = difflib.get_close_matches(name, schema.names, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return (f"key {spec!r}: column {name!r} does not exist in {where}{hint}; its columns "
            f"are: {', '.join(schema.names)}")


@dataclass(frozen=True, kw_only=True)
class ColumnKey(KeyFunction):
    """Base of the key functions that read one named column (KEYSPEC ``kind:NAME``)."""

    field_name: str

    @classmethod
    def from_spec(cls, spec: str, args: str) -> KeyFunction:
        name = spec_column(spec, args, cls.usage)
        return cls(spec=spec, field_name=name, columns=(name,))


def decoded_column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A column of ``batch`` with any dictionary encoding undone."""
    col = batch.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    return col


def normalise_key_array(arr: pa.Array, what: str) -> pa.Array:
    """Cast a key column to one of the three key types (string, binary, int64)."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        out = arr.cast(pa.string())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        out = arr.cast(pa.binary())
    elif pa.types.is_integer(t):
        try:
            out = arr.cast(pa.int64())
        except pa.ArrowInvalid as e:  # uint64 values of 2**63 and above
            import pyarrow.compute as pc
            raise KeyFunctionError(
                f"{what} holds integers beyond the signed 64-bit range of integer keys "
                f"({pc.max(arr).as_py()}); make the key a string (cast the column)"
            ) from e
    elif pa.types.is_null(t):
        out = arr.cast(pa.string())
    else:
        raise KeyFunctionError(
            f"{what} has type {t}; a group key must be a string, bytes or an integer"
        )
    return out


# ---- reading KEYSPEC arguments ------------------------------------------------------------

def spec_fields(spec: str, args: str, usage: str, need: int, optional: int = 0) -> list[str]:
    """``args`` split at ':' into ``need`` to ``need + optional`` non-empty fields."""
    parts = args.split(":") if args else []
    if not need <= len(parts) <= need + optional or not all(parts):
        raise SettingError(f"key {spec!r}: use {usage}")
    return parts


def spec_column(spec: str, args: str, usage: str) -> str:
    """The one column name a KEYSPEC takes (everything after ``kind:``, ':' included)."""
    if not args:
        raise SettingError(f"key {spec!r}: use {usage}")
    return args


def spec_int(text: str, spec: str, what: str, minimum: int = 1) -> int:
    """An integer argument of a KEYSPEC, at least ``minimum``."""
    try:
        n = int(text)
    except ValueError:
        n = minimum - 1
    if n < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer ≥ {minimum}")
        raise SettingError(f"key {spec!r}: {what} must be {kind}, got {text!r}")
    return n


def spec_float(text: str, spec: str, what: str) -> float:
    """A number argument of a KEYSPEC."""
    try:
        return float(text)
    except ValueError:
        raise SettingError(f"key {spec!r}: {what} must be a number, got {text!r}") from None


def spec_seed(parts: list[str], position: int, spec: str) -> int:
    """The optional SEED at ``position`` (0 when absent)."""
    return spec_int(parts[position], spec, "SEED", 0) if len(parts) > position else 0
