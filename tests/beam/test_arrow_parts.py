"""The Beam engine's Arrow pieces on their own: chunk cutting, partition counts (the
bounded-memory sort both engines share is tested in tests/engine/test_core.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.engine.beam_arrow import ChunkCutter, decode_chunk, default_num_shards
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN
from fedgroups.keys.hashing import partition_of


def _keyed(keys: list[str], start: int) -> pa.Table:
    n = len(keys)
    return pa.table({"v": np.arange(start, start + n), KEY_COLUMN: keys,
                     ORDINAL_COLUMN: pa.array(np.arange(start, start + n), pa.uint64())})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=60), min_size=1,
                max_size=6), st.integers(1, 5), st.integers(64, 4096))
def test_cutter_keeps_every_row_in_its_partition(batches, parts, chunk_bytes):
    cutter = ChunkCutter(parts, "lz4", chunk_bytes=chunk_bytes, buffer_bytes=chunk_bytes * 3)
    out, start = [], 0
    for keys in batches:
        out.extend(cutter.add(_keyed(keys, start)))
        start += len(keys)
    out.extend(cutter.flush())
    seen = []
    for p, data in out:
        t = decode_chunk(data)
        assert set(partition_of(t.column(KEY_COLUMN), parts).tolist()) == {p}
        seen.extend(t.column("v").to_pylist())
    assert sorted(seen) == list(range(start))


def test_default_num_shards():
    assert default_num_shards(None) == 32
    assert default_num_shards(10) == 4
    assert default_num_shards(1 << 40) == 4096
    assert default_num_shards(100 << 30) == 500
