"""Shared test settings: no progress bars, hypothesis profiles sized for a 2-core machine,
and which files under tests/ are collected."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

os.environ.setdefault("FEDGROUPS_PROGRESS", "0")
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.function_scoped_fixture])
settings.load_profile("default")


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Under tests/, only ``test_*.py`` files are test modules.

    ``--doctest-modules`` (pyproject.toml) is there for the examples in ``src/fedgroups``;
    under tests/ it would also import every helper and conftest as a module of its own,
    and the conftests, all named ``conftest``, clash.
    """
    if collection_path.suffix == ".py" and not collection_path.name.startswith("test_"):
        return True
    return None
