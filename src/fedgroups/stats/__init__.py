"""Statistics of grouped datasets: sizes from the index, label heterogeneity, plots.

>>> import fedgroups as fg
>>> fg.stats.summary("path/to/dataset").to_pandas()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# names are imported on first use, so that `fedgroups --help` (which builds the stats
# sub-command's parser from fedgroups.stats.cli) imports neither numpy nor pyarrow
_LAZY = {
    "count_matrix": "labels", "heterogeneity": "labels", "heterogeneity_summary": "labels",
    "label_counts": "labels", "plot_stats": "plots", "PERCENTILES": "summary",
    "describe": "summary", "format_summary": "summary", "group_table": "summary",
    "summary": "summary",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"fedgroups.stats.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedgroups.stats' has no attribute {name!r}")


class _StatsModule(types.ModuleType):
    """Importing the submodule ``fedgroups.stats.summary`` binds it as the package's
    ``summary``; the public name is the function, so bind that instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _StatsModule


__all__ = ["PERCENTILES", "count_matrix", "describe", "format_summary", "group_table",
           "heterogeneity", "heterogeneity_summary", "label_counts", "plot_stats", "summary"]
