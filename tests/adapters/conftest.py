"""A small grouped dataset with numeric, list and text columns, built once per session."""

from __future__ import annotations

import pytest

import fedgroups as fg


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
