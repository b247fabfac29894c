"""Apache Beam integration: ``fedgroups.beam.WriteGrouped`` and the engine's options.

Needs the ``beam`` extra (``pip install 'fedgroups[beam]'``); see docs/beam.md.
"""

from __future__ import annotations

try:
    import apache_beam  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    from fedgroups.errors import SettingError
    raise SettingError(
        "fedgroups.beam needs Apache Beam: pip install 'fedgroups[beam]'") from e

from fedgroups.engine.beam import FedGroupsOptions, GroupAndWrite, ReadAndKey
from fedgroups.engine.beam_write import WriteGrouped, run_beam

__all__ = ["FedGroupsOptions", "GroupAndWrite", "ReadAndKey", "WriteGrouped", "run_beam"]
