"""Small grouped datasets built once per session with the real build engine."""

from __future__ import annotations

import numpy as np
import pytest

import fedgroups as fg


def make_rows(num_groups: int, seed: int, max_size: int = 30) -> list[dict]:
    """Examples of ``num_groups`` users with 1..max_size examples each, interleaved."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, size=num_groups)
    rows = []
    for g, n in enumerate(sizes):
        for i in range(int(n)):
            rows.append({"user": f"u{g:05d}", "i": i, "x": float(g) + i / 1000,
                         "text": f"user {g} says {'hello ' * (i % 5)}{i}"})
    order = rng.permutation(len(rows))
    shuffled = [rows[j] for j in order]
    seen: dict[str, int] = {}
    for r in shuffled:  # "i" counts a user's examples in source order
        r["i"] = seen[r["user"]] = seen.get(r["user"], -1) + 1
    return shuffled


@pytest.fixture(scope="session")
def small_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """300 groups, two build workers (several shards)."""
    out = str(tmp_path_factory.mktemp("small") / "ds")
    fg.build(make_rows(300, seed=1), "field:user", out, overwrite=True, progress=False,
             workers=2)
    return out


@pytest.fixture(scope="session")
def parted_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tiny shards, so large groups are split into several parts and row groups."""
    out = str(tmp_path_factory.mktemp("parted") / "ds")
    rows = make_rows(40, seed=2, max_size=3)
    rows += [{"user": "big", "i": i, "x": float(i), "text": "w " * 300 + str(i)}
             for i in range(3000)]
    fg.build(rows, "field:user", out, overwrite=True, progress=False, workers=1,
             shard_size="256KB")
    return out


@pytest.fixture(scope="session")
def small(small_path: str) -> fg.GroupedDataset:
    return fg.open(small_path)


def _shift_index_row(root: str, row: int = 3) -> object:
    """Move one index entry's first_row by one and re-hash the index in the manifest, so
    only the reader's key check can notice; return that entry's key."""
    import json
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedgroups.format.manifest import file_sha256
    from fedgroups.format.spec import MANIFEST_FILE

    manifest_path = os.path.join(root, MANIFEST_FILE)
    with open(manifest_path) as f:
        m = json.load(f)
    path = os.path.join(root, m["index"]["path"])
    t = pq.read_table(path)
    first = t.column("first_row").to_pylist()
    first[row] += 1
    t = t.set_column(t.schema.get_field_index("first_row"), "first_row",
                     pa.array(first, pa.int64()))
    pq.write_table(t, path)
    m["index"].update(file_bytes=os.path.getsize(path), sha256=file_sha256(path))
    with open(manifest_path, "w") as f:
        json.dump(m, f)
    return t.column("key")[row].as_py()


@pytest.fixture
def shift_index_row():
    return _shift_index_row
