"""``field:NAME`` — the group is the value of a column (a user id, a document id)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fedgroups.keys.base import ColumnKey, decoded_column, normalise_key_array


@dataclass(frozen=True, kw_only=True)
class FieldKey(ColumnKey):
    """Each example's group is its value in column ``field_name`` (string, bytes or int).

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> key = FieldKey.from_spec("field:user", "user")
    >>> key.keys(pa.record_batch({"user": ["a", "b", "a"]}), np.arange(3)).to_pylist()
    ['a', 'b', 'a']
    """

    usage = "field:NAME"

    def keys(self, batch: pa.RecordBatch, ordinals: np.ndarray) -> pa.Array:
        return normalise_key_array(decoded_column(batch, self.field_name), f"column {self.field_name!r}")
