"""PyTorch adapter end to end: a real DataLoader with 2 workers, a real 2-process gloo group.

Every iterator over a DataLoader with workers is shut down by the test that made it
(:func:`loader`), never left to the garbage collector: a half-read iterator kept alive by
a traceback was shut down later at a random moment, and a suite run once hung there in
``_shutdown_workers``. An autouse fixture fails a test that leaves a worker running.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402 - after the importorskip

from fedgroups.adapters.torch import GroupStreamDataset, unpack  # noqa: E402
from fedgroups.errors import SettingError  # noqa: E402

TIMEOUT = 60  # seconds a worker may take for one item before the DataLoader gives up


@contextmanager
def loader(data: Any, *, num_workers: int = 0, batch_size: int | None = None
           ) -> Iterator[Iterator[Any]]:
    """An iterator over ``DataLoader(data, ...)`` whose workers are shut down on leaving
    the block, however it is left (read to the end, an assertion, an exception)."""
    it = iter(DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                         timeout=TIMEOUT if num_workers else 0))
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # only with workers
        if shutdown is not None:
            shutdown()
        del it


def read_all(data: Any, num_workers: int = 2) -> list[Any]:
    with loader(data, num_workers=num_workers) as it:
        return list(it)


@pytest.fixture(autouse=True)
def no_worker_left_running() -> Iterator[None]:
    yield
    left = multiprocessing.active_children()  # also reaps the workers that have exited
    assert not left, f"DataLoader workers still running after the test: {left}"


def test_dataloader_two_workers_covers_each_group_once(ads):
    data = GroupStreamDataset(ads, output="groups", columns=["i", "y", "text"], seed=3)
    items = read_all(data)
    keys = [it["key"] for it in items]
    assert sorted(keys) == ads.keys()  # none lost, none repeated
    for it in items:
        assert it["i"].tolist() == list(range(it["num_examples"]))
        assert isinstance(it["y"], torch.Tensor) and isinstance(it["text"], list)
    data.set_epoch(1)
    again = [it["key"] for it in read_all(data)]
    assert sorted(again) == ads.keys() and again != keys


def test_batches_mode_and_transform(ads):
    data = GroupStreamDataset(ads, output="batches", batch_size=4, columns=["i"], seed=0)
    rows: dict[str, int] = {}
    for b in read_all(data):
        assert len(b["i"]) <= 4
        rows[b["key"]] = rows.get(b["key"], 0) + len(b["i"])
    assert rows == dict(zip(ads.keys(), ads.group_sizes().tolist()))
    sizes = GroupStreamDataset(ads, transform=lambda g: (g.key, g.num_examples))
    assert sorted(sizes) == sorted(rows.items())


def test_blocks_pack_consecutive_groups_with_offsets(ads):
    data = GroupStreamDataset(ads, output="blocks", batch_size=16, columns=["i", "text"],
                              seed=2)
    pieces: dict[str, list[int]] = {}
    items = read_all(data)
    for item in items:
        offsets = item["offsets"].tolist()
        assert offsets[0] == 0 and offsets[-1] == len(item["i"]) == len(item["text"]) <= 16
        assert len(item["keys"]) == len(offsets) - 1
        for key, lo, hi in zip(item["keys"], offsets, offsets[1:]):
            assert hi > lo
            pieces.setdefault(key, []).extend(item["i"][lo:hi].tolist())
            assert all(t.startswith(f"hello {int(key[1:])} ") for t in item["text"][lo:hi])
    assert sorted(pieces) == ads.keys()  # every group, none twice (its rows in order)
    assert all(v == list(range(len(v))) for v in pieces.values())
    assert sum(len(it["i"]) != 16 for it in items) <= 2  # one short tail per worker
    single = list(GroupStreamDataset(ads, output="blocks", batch_size=16, columns=["i"],
                                     seed=2))
    assert sum(len(it["i"]) for it in single) == ads.num_examples
    with pytest.raises(SettingError, match="output"):
        GroupStreamDataset(ads, output="rows")


@pytest.mark.parametrize("pack_rows", [1, 7, 64])
def test_packed_batches_unpack_to_the_same_batches(ads, pack_rows):
    plain = GroupStreamDataset(ads, output="batches", batch_size=4, columns=["i", "text"],
                               seed=1)
    packed = GroupStreamDataset(ads, output="batches", batch_size=4, columns=["i", "text"],
                                seed=1, pack_rows=pack_rows)

    def rows(items):
        return [(b["key"], b["i"].tolist(), b["text"]) for b in items]

    want = rows(DataLoader(plain, batch_size=None))
    items = list(DataLoader(packed, batch_size=None))
    assert all(len(it["i"]) <= max(pack_rows, 4) for it in items)
    assert len(items) < len(want) or pack_rows == 1  # far fewer items cross
    assert rows(unpack(items)) == want  # one process: the very same batches, in order
    # two workers: each batch once, whole (groups are split among workers, not batches)
    two = rows(unpack(read_all(packed)))
    assert sorted(two) == sorted(want)
    # unpack passes other items through, so one loop serves both
    assert rows(unpack(DataLoader(plain, batch_size=None))) == want
    assert list(unpack([("a transform's", 1)])) == [("a transform's", 1)]
    with pytest.raises(SettingError, match="pack_rows"):
        GroupStreamDataset(ads, output="groups", pack_rows=8)


def test_dataset_pickles_without_handles_or_reloading_the_index(ads, monkeypatch):
    import pickle

    import fedgroups.reader.index as index_mod

    data = GroupStreamDataset(ads, output="groups", columns=["i"], seed=0)
    list(data)  # opens handles and fills the cache in this process
    monkeypatch.setattr(index_mod, "load_index", lambda *a, **k: pytest.fail("reloaded"))
    copy = pickle.loads(pickle.dumps(data))  # what a spawned worker receives
    assert copy.dataset.store.shards is not ads.store.shards
    assert sorted(it["key"] for it in copy) == ads.keys()


CHILD = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    import fedgroups as fg
    from fedgroups.adapters.torch import GroupStreamDataset
    path, port, rank, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    data = GroupStreamDataset(fg.open(path), output="groups", columns=["i"], seed=7, epoch=2)
    keys = [item["key"] for item in DataLoader(data, batch_size=None, num_workers=2,
                                                       timeout=60)]
    gathered = [None, None]
    dist.all_gather_object(gathered, keys)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_group_partitions_groups(ads, adapter_path, tmp_path):
    out = str(tmp_path / "keys.json")
    port = str(_free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, adapter_path, port, str(r), out],
                              env=env, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(out) as f:
        per_rank = json.load(f)
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == ads.keys()
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 2  # 2 workers per rank, each ±1


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("output", ["batches", "groups", "blocks"])
def test_default_collation_fails_with_our_message(ads, output, num_workers):
    """``DataLoader(data, batch_size=4)`` would stack tensors of different groups' lengths
    (torch: "stack expects each tensor to be equal size"); ours says what to pass."""
    data = GroupStreamDataset(ads, output=output, batch_size=8, columns=["i", "y"])
    with loader(data, batch_size=4, num_workers=num_workers) as it:
        with pytest.raises(SettingError, match="batch_size=None.*pack_rows"):
            next(it)
    with loader(data, num_workers=num_workers) as it:
        assert isinstance(next(it), dict)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fixed_size_lists_are_tensors_without_settings(fixed_ds, num_workers):
    from tests.adapters.conftest import EMB, emb_of

    def check(emb, ids):
        assert isinstance(emb, torch.Tensor) and emb.dtype == torch.float32
        assert emb.shape == (len(ids), EMB)
        assert all((row.numpy() == emb_of(int(i))).all() for i, row in zip(ids, emb))

    cols = ["i", "emb", "tokens"]
    groups = read_all(GroupStreamDataset(fixed_ds, output="groups", columns=cols), num_workers)
    assert sorted(g["key"] for g in groups) == fixed_ds.keys()
    for g in groups:
        check(g["emb"], g["i"])
        assert isinstance(g["tokens"], list)  # variable-length lists stay lists
        assert g["tokens"] == [list(range(1 + int(i) % 3)) for i in g["i"]]
    for output, pack_rows in (("batches", None), ("blocks", None), ("batches", 5)):
        data = GroupStreamDataset(fixed_ds, output=output, batch_size=3, columns=cols,
                                  pack_rows=pack_rows)
        items = read_all(data, num_workers)
        for item in items:
            check(item["emb"], item["i"])
        assert sum(len(it["i"]) for it in items) == fixed_ds.num_examples
        if pack_rows:
            for b in unpack(items):
                check(b["emb"], b["i"])
