"""The engines' shared core: the bounded-memory sort, and one partition written the same
way whether its rows come from local run files or from Beam shuffle chunks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.engine import core
from fedgroups.engine.beam_arrow import encode_chunk, write_partition
from fedgroups.engine.core import PartitionSorter, partition_count
from fedgroups.engine.reduce import reduce_partition
from fedgroups.engine.runs import Run
from fedgroups.format.spec import KEY_COLUMN, ORDINAL_COLUMN

_SCHEMA = pa.schema([(KEY_COLUMN, pa.string()), ("v", pa.int64()), (ORDINAL_COLUMN, pa.uint64())])


def _keyed(keys: list[str], start: int) -> pa.Table:
    n = len(keys)
    return pa.table({"v": np.arange(start, start + n), KEY_COLUMN: keys,
                     ORDINAL_COLUMN: pa.array(np.arange(start, start + n), pa.uint64())})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abc"), min_size=1, max_size=80), min_size=1,
                max_size=8), st.integers(200, 20_000), st.randoms(use_true_random=False))
def test_sorter_equals_a_full_sort_within_any_budget(tmp_path_factory, batches, budget, rnd):
    tables, start = [], 0
    for keys in batches:
        tables.append(_keyed(keys, start))
        start += len(keys)
    rnd.shuffle(tables)  # chunks arrive in any order; the ordinal restores source order
    sorter = PartitionSorter(str(tmp_path_factory.mktemp("s")), budget, _SCHEMA)
    for t in tables:
        sorter.add(t)
    got = pa.concat_tables(list(sorter.sorted_tables()))
    want = pa.concat_tables(tables).sort_by([(KEY_COLUMN, "ascending"),
                                             (ORDINAL_COLUMN, "ascending")])
    assert got.select(_SCHEMA.names).equals(want.select(_SCHEMA.names))


def test_many_runs_are_merged_in_levels_and_removed(tmp_path):
    # a budget of ~1 KiB: dozens of runs, merged two at a time (fan-in 2) in several levels
    tables = [_keyed([f"k{(i * 7 + j) % 5}" for j in range(40)], i * 40) for i in range(30)]
    sorter = PartitionSorter(str(tmp_path), 1024, _SCHEMA)
    for t in tables:
        sorter.add(t)
    assert sorter.spilled == len(sorter.runs) > 8
    got = pa.concat_tables(list(sorter.sorted_tables()))
    assert got.num_rows == 1200 and list(tmp_path.iterdir()) == []
    keys, ords = got.column(KEY_COLUMN).to_pylist(), got.column(ORDINAL_COLUMN).to_pylist()
    assert list(zip(keys, ords)) == sorted(zip(keys, ords))


def test_both_engines_write_one_partition_byte_for_byte_alike(tmp_path):
    """The local reduce (run files) and the Beam reduce (shuffle chunks) of the same rows
    produce identical shard files and index rows, in memory and out of core."""
    rng = np.random.default_rng(0)
    pieces = [_keyed([f"user{u}" for u in rng.integers(0, 9, 300)], i * 300) for i in range(6)]
    schema = pa.schema([(KEY_COLUMN, pa.string()), ("v", pa.int64())])
    for budget in (1 << 30, 8_000):  # one in-memory sort; many spilled runs
        runs = []
        for i, t in enumerate(pieces):
            path = str(tmp_path / f"run-{budget}-{i}.arrow")
            core.write_run(path, t)
            runs.append(Run(0, path, t.num_rows, t.nbytes))
        (tmp_path / f"local{budget}").mkdir()
        (tmp_path / f"beam{budget}").mkdir()
        local = reduce_partition(0, runs, root=str(tmp_path / f"local{budget}"), schema=schema,
                                 text_column=None, sort_in_memory_bytes=budget,
                                 scratch=str(tmp_path), shard_bytes=4096)
        beam, _ = write_partition(0, [encode_chunk(t, "lz4") for t in pieces],
                                  root=str(tmp_path / f"beam{budget}"), schema=schema,
                                  text_column=None, sort_budget=budget, shard_bytes=4096)
        assert len(local.shards) > 2
        assert [s["sha256"] for s in local.shards] == [s["sha256"] for s in beam.shards]
        assert local.index.equals(beam.index)


def test_partition_count():
    # one in-memory sort per partition, 25% slack, at least `minimum`, at most MAX_PARTITIONS
    assert partition_count(None, sort_budget=1 << 20, minimum=2, unknown=8) == 8
    assert partition_count(10, sort_budget=1 << 20, minimum=2, unknown=8) == 2
    assert partition_count(100 << 20, sort_budget=10 << 20, minimum=2, unknown=8) == 13
    assert partition_count(1 << 50, sort_budget=1 << 20, minimum=2, unknown=8) == \
        core.MAX_PARTITIONS
    # a large budget still cuts at MAX_PARTITION_BYTES (about one shard file)
    assert partition_count(10 << 30, sort_budget=8 << 30, minimum=1, unknown=1) == 25
