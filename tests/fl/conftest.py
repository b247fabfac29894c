"""Fixtures for tests/fl: tiny grouped datasets built in the test, tiny configs.

Datasets are built with ``fedgroups.build`` and read with ``fedgroups.open`` when the
reader is installed; until then an in-memory stand-in with the same small API is used.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import fedgroups.fl  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import torch
from fl_testkit import MemoryDataset, real_reader

torch.set_num_threads(1)


@pytest.fixture
def make_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``make_dataset(records, name) -> path`` of a grouped dataset keyed by ``user``."""
    registry: dict[str, MemoryDataset] = {}
    if not real_reader():
        from fedgroups.fl import datasets

        monkeypatch.setattr(datasets, "open_dataset", lambda path: registry[str(path)])

    def make(records: list[dict[str, Any]], name: str = "ds") -> str:
        out = tmp_path / name
        if real_reader():
            from fedgroups.engine.api import build

            build(records, "field:user", str(out), progress=False)
        else:
            groups: dict[str, list[dict[str, Any]]] = {}
            for r in records:
                groups.setdefault(r["user"], []).append(r)
            registry[str(out)] = MemoryDataset(groups)
        return str(out)

    return make
