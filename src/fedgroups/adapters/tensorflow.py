"""TensorFlow: a ``tf.data.Dataset`` of per-group ``tf.data.Dataset`` s.

This is the shape of Dataset Grouper's group streams: the outer dataset yields one inner
dataset of examples (dicts of scalar tensors) per group, in the stream's order, so
training loops written for it run unchanged::

    for client_ds in to_tf_dataset(ds, seed=0).take(cohort_size):
        for batch in client_ds.batch(16): ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.format.rows import to_dicts
from fedgroups.reader import Group, GroupedDataset


def _tf() -> Any:
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fedgroups.adapters.tensorflow needs TensorFlow: "
                          "pip install 'fedgroups[tf]'") from e
    return tf


def _spec(tf: Any, name: str, t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or \
            pa.types.is_large_binary(t):
        return tf.TensorSpec((), tf.string)
    if pa.types.is_boolean(t):
        return tf.TensorSpec((), tf.bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return tf.TensorSpec((), tf.as_dtype(t.to_pandas_dtype()))
    if pa.types.is_fixed_size_list(t):  # fixed_size_list<float32, 64>: shape (64,)
        inner = _spec(tf, name, t.value_type)
        return tf.TensorSpec((t.list_size, *inner.shape), inner.dtype)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _spec(tf, name, t.value_type)
        return tf.TensorSpec((None,), inner.dtype)
    raise SettingError(f"column {name!r} of {t} has no TensorFlow equivalent; select "
                       "other columns")


class _Cursor:
    """Hands each inner dataset its group from one stream over the outer order.

    TensorFlow asks for the groups' rows in the outer dataset's order when a loop iterates
    it, so the stream's read-ahead serves them (a decoded row group holds many small
    groups; reading each group on its own would decode a row group per group). A key asked
    for out of order (the outer dataset taken again, or interleaved) is found among the
    next ``LOOKAHEAD`` groups of the stream, or read by random access. The first key of
    the order starts the stream again (a new pass of the outer dataset).
    """

    LOOKAHEAD = 64

    def __init__(self, dataset: GroupedDataset, stream: dict[str, Any], columns: list[str],
                 first: Any) -> None:
        self._dataset, self._stream, self._columns, self._first = dataset, stream, columns, first
        self._it: Iterator[Group] | None = None
        self._ahead: dict[Any, Group] = {}
        self._lock = threading.Lock()

    def group(self, key: Any) -> Group:
        with self._lock:
            if key == self._first or self._it is None:
                self._it, self._ahead = iter(self._dataset.groups(
                    columns=self._columns, **self._stream)), {}
            g = self._ahead.pop(key, None)
            if g is not None:
                return g
            for _ in range(self.LOOKAHEAD):
                g = next(self._it, None)
                if g is None:
                    break
                if g.key == key:
                    return g
                if len(self._ahead) < self.LOOKAHEAD:
                    self._ahead[g.key] = g
        return self._dataset.group(key)


def to_tf_dataset(dataset: GroupedDataset, *, columns: Sequence[str] | None = None,
                  batch_rows: int = 1024, **stream: Any) -> Any:
    """``tf.data.Dataset`` whose elements are the groups' example datasets.

    ``stream`` takes the arguments of :meth:`GroupedDataset.groups` (shuffle, seed, epoch,
    rank, world_size, min_examples, keys, ...); the order of groups is that stream's, and
    iterating the outer dataset in order reads the groups through that stream (see
    :class:`_Cursor`). Each inner dataset yields its group's examples, ``batch_rows`` rows
    converted at a time.
    """
    tf = _tf()
    cols = dataset.store.check_columns(columns)
    signature = {c: _spec(tf, c, dataset.schema.field(c).type) for c in cols}
    keys = dataset.groups(**stream).keys()
    key_type = dataset.manifest["key"]["type"]
    cursor = _Cursor(dataset, stream, cols, keys[0] if keys else None)

    def examples(key: Any) -> Any:
        if key_type == "string":
            key = key.decode("utf-8")
        elif key_type == "int64":
            key = int(key)
        for batch in cursor.group(key).batches(batch_rows, cols):
            yield from to_dicts(batch)

    def group_dataset(key: Any) -> Any:
        return tf.data.Dataset.from_generator(examples, args=(key,),
                                              output_signature=signature)

    if key_type == "int64":
        key_ds = tf.data.Dataset.from_tensor_slices(tf.constant(keys, tf.int64))
    else:
        key_ds = tf.data.Dataset.from_tensor_slices(tf.constant(keys, tf.string))
    return key_ds.map(group_dataset)
