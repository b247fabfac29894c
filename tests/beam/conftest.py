"""Fixtures for the Beam engine tests (skipped without apache-beam)."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam")

from beam_helpers import skewed_table


@pytest.fixture
def parquet_files(tmp_path: Any) -> str:
    """Five Parquet files of a skewed table, as a directory source (five units)."""
    table = skewed_table(6000, seed=1)
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        pq.write_table(table.slice(i * 1200, 1200), d / f"part-{i}.parquet", row_group_size=300)
    return str(d)
