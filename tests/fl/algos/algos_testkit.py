"""Helpers for tests/fl/algos: a tiny flat federation over in-memory users, its weights;
the tiny multilingual world of tests/fl/hierarchy for tree runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from fl_testkit import MEMORY_BASE, memory_config, memory_federation

from fedgroups.fl.backends import Backend
from fedgroups.fl.federation import Federation
from fedgroups.fl.strategy import Strategy

BASE = MEMORY_BASE
config = memory_config


def federation(over: dict[str, Any], *, strategy: Strategy | None = None,
               backend: Backend | None = None, users: int = 8) -> Federation:
    return memory_federation(config(over), backend=backend, strategy=strategy, users=users)


def server_params(fed: Federation) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in fed.server.snapshot().items()}


def _hierarchy_conftest() -> Any:
    """tests/fl/hierarchy/conftest.py as a module (a conftest is not importable by name
    from another folder): its ``world_records`` and ``world_config``."""
    path = Path(__file__).resolve().parents[1] / "hierarchy" / "conftest.py"
    spec = importlib.util.spec_from_file_location("fl_hierarchy_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def world_dataset(tmp_path: Path) -> str:
    """The hierarchy tests' world dataset (groups = documents; columns family, lang)."""
    from fedgroups.engine.api import build

    out = tmp_path / "world"
    build(_hierarchy_conftest().world_records(), "field:doc", str(out),
          group_columns=("family", "lang"), progress=False)
    return str(out)


def world_config(data: str, out: str | Path, **over: Any) -> dict[str, Any]:
    """A config dict for a seconds-long tree run on ``world_dataset`` (dotted overrides)."""
    return _hierarchy_conftest().world_config(data, out, **over)
