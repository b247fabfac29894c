"""Statistics of grouped datasets: sizes from the index, label heterogeneity, plots.

>>> import fedgroups as fg
>>> fg.stats.summary("path/to/dataset").to_pandas()  # doctest: +SKIP
"""

from fedgroups.stats.labels import (
    count_matrix,
    heterogeneity,
    heterogeneity_summary,
    label_counts,
)
from fedgroups.stats.plots import plot_stats  # matplotlib is imported only when called
from fedgroups.stats.summary import PERCENTILES, describe, format_summary, group_table, summary

__all__ = ["PERCENTILES", "count_matrix", "describe", "format_summary", "group_table",
           "heterogeneity", "heterogeneity_summary", "label_counts", "plot_stats", "summary"]
