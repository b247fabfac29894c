"""fedgroups: group-structured datasets and federated simulation of language models.

``import fedgroups`` imports no ML framework; adapters and ``fedgroups.fl`` do, lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Eager: the subpackage ``fedgroups.build`` would otherwise shadow the function ``build``.
from fedgroups.build.api import BuildReport, build
from fedgroups.errors import FedGroupsError

_LAZY = {
    "open": ("fedgroups.reader.dataset", "open"),
    "GroupedDataset": ("fedgroups.reader.dataset", "GroupedDataset"),
    "Group": ("fedgroups.reader.dataset", "Group"),
    "verify": ("fedgroups.format.verify", "verify"),
    "batched": ("fedgroups.keys.functions", "batched"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in ("recipes", "beam", "keys", "stats"):
        import importlib
        return importlib.import_module(f"fedgroups.{name}")
    raise AttributeError(f"module 'fedgroups' has no attribute {name!r}")


__all__ = ["BuildReport", "FedGroupsError", "Group", "GroupedDataset", "build", "open", "verify",
           "batched", "__version__"]
