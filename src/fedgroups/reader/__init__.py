"""Reading grouped datasets: random access by key, group streams, resumable order."""

from fedgroups.reader.dataset import Group, GroupedDataset, open

__all__ = ["Group", "GroupedDataset", "open"]
