"""``fedgroups stats OUT [--plot stats.png] [--label COLUMN]``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_stats_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stats", help="group-size statistics and plots of a grouped dataset",
        description="Per-group examples, bytes and words (min, percentiles, max, mean) from "
                    "the index; with --label, how a label's distribution varies across groups.")
    p.add_argument("path", help="a grouped dataset directory")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a figure here")
    p.add_argument("--label", default=None, metavar="COLUMN",
                   help="a label column: report its heterogeneity across groups (reads that "
                        "column once) and add a heatmap to the plot")
    p.add_argument("--top", type=int, default=30, help="groups in the heatmap (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def run_stats(args: argparse.Namespace) -> int:
    # imported here so that building the parser (fedgroups --help) imports no pyarrow
    from fedgroups.stats.labels import heterogeneity, heterogeneity_summary, label_counts
    from fedgroups.stats.plots import plot_stats
    from fedgroups.stats.summary import as_dataset, format_summary, group_table, summary

    ds = as_dataset(args.path)
    groups = group_table(ds)
    table = summary(ds)
    counts = label_counts(ds, args.label) if args.label else None
    hetero = heterogeneity_summary(heterogeneity(counts)) if counts is not None else None
    if args.json:
        out: dict[str, Any] = {"path": ds.root, "summary": table.to_pylist()}
        if hetero is not None:
            out["label"] = args.label
            out["heterogeneity"] = hetero.to_pylist()
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{ds.root}  (key {ds.manifest['key'].get('spec')!r})")
        print(format_summary(table))
        if hetero is not None:
            print(f"\nlabel {args.label!r} across groups")
            print(format_summary(hetero))
    if args.plot:
        title = f"{ds.root} — {len(ds):,} groups, key {ds.manifest['key'].get('spec')!r}"
        plot_stats(groups, args.plot, title=title, label_counts=counts,
                   label=args.label or "label", top_groups=args.top)
        if not args.json:
            print(f"\nplot: {args.plot}")
    return 0
