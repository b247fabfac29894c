"""Exceptions raised for users' mistakes: each names the file, row, group or setting."""

from __future__ import annotations


class FedGroupsError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class SourceError(FedGroupsError):
    """A source file or dataset cannot be read as given."""


class KeyFunctionError(FedGroupsError):
    """The key function failed, or returned something that is not a key."""


class GroupColumnError(FedGroupsError):
    """A group column (``--group-columns``) does not hold one value per group."""


class OutputExistsError(FedGroupsError):
    """The output directory already holds something and --overwrite was not given."""


class NotADatasetError(FedGroupsError):
    """A directory is not a finished grouped dataset (no valid manifest)."""


class CorruptDatasetError(FedGroupsError):
    """A grouped dataset's files disagree with its manifest or index."""


class SettingError(FedGroupsError):
    """A setting has a value that is not allowed."""
