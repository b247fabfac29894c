"""Errors of the training simulator: all ``FedGroupsError``s, so ``except fg.FedGroupsError``
catches a user's training mistakes.  Each keeps the built-in base older callers caught.
"""

from __future__ import annotations

from fedgroups.errors import FedGroupsError, SettingError


class ConfigError(SettingError, ValueError):
    """A setting is unknown, ill-typed or out of range; the message names it (dotted path)."""


class RunDirError(FedGroupsError, RuntimeError):
    """The run directory cannot be used as asked (already holds a run, nothing to resume)."""


class CheckpointError(FedGroupsError, ValueError):
    """A checkpoint cannot be used: wrong format, or it does not belong to this run."""


class BackendError(FedGroupsError, RuntimeError):
    """The simulation backend cannot start (e.g. 'distributed' outside torchrun)."""


class TokenizerError(FedGroupsError, ValueError):
    """The tokenizer named by ``tokenizer.path`` is missing or unusable."""


class DataError(FedGroupsError, ValueError):
    """A group's examples cannot be used for training (e.g. no text column)."""


class NonFiniteLossError(FedGroupsError, RuntimeError):
    """A client's training loss became NaN or infinite."""
