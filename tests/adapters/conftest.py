"""Small grouped datasets for the adapters, built once per session: numeric, list and text
columns; and a fixed-size list column (an embedding per example)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import fedgroups as fg

EMB = 64  # fixed_size_list<float32, 64>


@pytest.fixture(scope="session")
def adapter_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    rows = []
    for g in range(60):
        for i in range(1 + (g * 7) % 23):
            rows.append({"user": f"u{g:03d}", "i": i, "y": float(g), "tokens": [g, i, g + i][: 1 + i % 3],
                         "text": f"hello {g} {i}"})
    out = str(tmp_path_factory.mktemp("adapters") / "ds")
    fg.build(rows, "field:user", out, overwrite=True, progress=False, workers=2)
    return out


@pytest.fixture(scope="session")
def ads(adapter_path: str) -> fg.GroupedDataset:
    return fg.open(adapter_path)


def emb_of(i: int) -> np.ndarray:
    """Row ``i``'s embedding: ``i * 1000 + 0..63`` (exact in float32)."""
    return (i * 1000 + np.arange(EMB)).astype(np.float32)


@pytest.fixture(scope="session")
def fixed_ds(tmp_path_factory: pytest.TempPathFactory) -> fg.GroupedDataset:
    """12 groups of 1-5 rows; ``emb`` is ``fixed_size_list<float32, 64>`` (row ``i``:
    :func:`emb_of`), ``tokens`` a variable-length list, ``i`` the global row number."""
    n_rows = [1 + g % 5 for g in range(12)]
    users = [f"g{g:02d}" for g, n in enumerate(n_rows) for _ in range(n)]
    ids = np.arange(len(users))
    flat = np.concatenate([emb_of(int(i)) for i in ids])
    table = pa.table({
        "user": users,
        "i": ids,
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), EMB),
        "tokens": [list(range(1 + int(i) % 3)) for i in ids],
    })
    out = str(tmp_path_factory.mktemp("fixed") / "ds")
    fg.build(table, "field:user", out, overwrite=True, progress=False)
    ds = fg.open(out)
    assert pa.types.is_fixed_size_list(ds.schema.field("emb").type)
    return ds
