"""fedgroups: group-structured datasets and federated simulation of language models.

``import fedgroups`` is light: every public name below is imported on first use, and no ML
framework is imported until an adapter or ``fedgroups.fl`` is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from fedgroups.engine.api import BuildReport, build
    from fedgroups.errors import FedGroupsError
    from fedgroups.format.verify import verify
    from fedgroups.keys.python_function import batched
    from fedgroups.reader.dataset import Group, GroupedDataset, open

_LAZY = {
    "build": ("fedgroups.engine.api", "build"),
    "BuildReport": ("fedgroups.engine.api", "BuildReport"),
    "FedGroupsError": ("fedgroups.errors", "FedGroupsError"),
    "open": ("fedgroups.reader.dataset", "open"),
    "GroupedDataset": ("fedgroups.reader.dataset", "GroupedDataset"),
    "Group": ("fedgroups.reader.dataset", "Group"),
    "verify": ("fedgroups.format.verify", "verify"),
    "batched": ("fedgroups.keys.python_function", "batched"),
}
_SUBPACKAGES = ("recipes", "beam", "keys", "stats", "engine", "reader", "format", "sources",
                "adapters", "fl")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fedgroups.{name}")
    raise AttributeError(f"module 'fedgroups' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY) + list(_SUBPACKAGES))


__all__ = ["BuildReport", "FedGroupsError", "Group", "GroupedDataset", "build", "open", "verify",
           "batched", "__version__"]
