"""The ``fedgroups`` command: build, info, verify, head, stats, train."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from fedgroups.errors import FedGroupsError
from fedgroups.terminal import human_bytes

# `fedgroups --help` and every parser are built without numpy or pyarrow: the KEYSPEC list
# (which needs the key functions, hence numpy) is filled in only when build's help is shown.
_KEYSPEC_HELP = "\0keyspec-help"


class _HelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help == _KEYSPEC_HELP:
            from fedgroups.keys.registry import KEYSPEC_HELP
            return KEYSPEC_HELP.replace("%", "%%")
        return action.help


def table(rows: Sequence[tuple[str, Any]], title: str | None = None) -> str:
    """A two-column text table."""
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * max(len(title or ""), width + 30)] if title else []
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def _describe_source(src: dict[str, Any]) -> str:
    if src.get("kind") == "files":
        paths = src.get("paths") or ["?"]
        more = f" and {src['num_files'] - 1} more" if src.get("num_files", 1) > 1 else ""
        return f"{paths[0]}{more} ({', '.join(src.get('formats', []))})"
    name = src.get("spec") or src.get("name") or src.get("kind", "?")
    split = f", split {src['split']}" if src.get("split") else ""
    return f"{name}{split}"


def info_rows(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    from fedgroups.format.layout import CARD_FILE

    t = manifest["totals"]
    b = manifest.get("build", {})
    src = manifest.get("source", {})
    cols = ", ".join(f"{c['name']}: {c['type']}" for c in manifest["schema"]["columns"])
    return [
        ("groups", f"{t['groups']:,}"),
        ("examples", f"{t['examples']:,}"),
        ("bytes (uncompressed)", human_bytes(t["bytes"])),
        ("words", f"{t['words']:,}" + (f"  (column {manifest['text_column']!r})"
                                      if manifest.get("text_column") else "")),
        ("examples per group", f"mean {t['examples'] / max(t['groups'], 1):,.1f}, "
                               f"largest {t['largest_group_examples']:,}"),
        ("groups split in parts", f"{t['parts'] - t['groups']:,}"),
        ("dropped examples", f"{t['dropped_examples']:,}"),
        ("shards", f"{t['shards']}  "
                   f"({human_bytes(sum(s['file_bytes'] for s in manifest['shards']))} on disk)"),
        ("key", f"{manifest['key'].get('spec')}  ({manifest['key']['type']})"),
        ("group columns", ", ".join(manifest.get("group_columns", [])) or "none"),
        ("source", _describe_source(src)),
        ("schema", cols),
        ("built", f"{manifest['created']} by fedgroups {manifest['fedgroups_version']}, "
                  f"engine {b.get('engine')}, {b.get('workers', '?')} workers, "
                  f"{b.get('seconds', '?')} s"),
        ("format", f"{manifest['format']} v{manifest['format_version']}"),
    ] + ([("dataset card", f"{CARD_FILE} (copy it to README.md to publish on the Hub)"),
          ("other readers", "point pyarrow, pandas, DuckDB, Spark or datasets at this folder; "
                            "Polars at its *.parquet")]
         if manifest["format_version"] >= 2 else [])


def _add_build(sub: Any) -> None:
    p = sub.add_parser("build", help="group a dataset by a key and write it",
                       formatter_class=_HelpFormatter,
                       description="Group SOURCE by KEYSPEC and write a grouped dataset to OUT.")
    p.usage = ("fedgroups build SOURCE [SOURCE ...] OUT --key KEYSPEC [options]\n"
               "       fedgroups build --recipe NAME OUT [options]")
    p.add_argument("paths", nargs="*", metavar="SOURCE... OUT",
                   help="SOURCE: paths/globs of Parquet, JSONL, CSV or text files (several, "
                   "e.g. a glob the shell expanded), local or URLs (gs://, s3://, "
                   "hf://datasets/...); or one of hf:NAME[:CONFIG], stdlib:. "
                   "OUT: the output directory (last)")
    p.add_argument("--key", help=_KEYSPEC_HELP)
    p.add_argument("--recipe", help="a named dataset (fedc4, fedwiki, fedbookco, fedccnews, "
                   "shakespeare); then only OUT is given")
    p.add_argument("--recipe-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe's option, e.g. config=en, streaming=true, path=pg100.txt "
                   "(repeatable; see docs/recipes.md)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--memory-limit", default="2GB", help="resident memory budget (default 2GB)")
    p.add_argument("--split", default=None, help="split of a Hugging Face dataset (default train)")
    p.add_argument("--format", default=None, help="parquet|jsonl|csv|tsv|text (default: from "
                   "the file extension)")
    p.add_argument("--encoding-errors", choices=("strict", "replace"), default=None,
                   help="text files that are not UTF-8: stop naming file and line (strict, "
                   "the default) or replace each bad sequence by U+FFFD and count them")
    p.add_argument("--text-column", default=None,
                   help="column whose words are counted (default: auto; 'none' for no count)")
    p.add_argument("--on-missing-key", choices=["error", "drop"], default=None,
                   help="what to do with examples whose key is missing: error (default) or "
                   "drop (count and report them)")
    p.add_argument("--group-columns", default=None, metavar="A,B",
                   help="source columns constant within each group (e.g. family,lang), "
                   "recorded per group in the index; an error names a group where one varies")
    p.add_argument("--engine", choices=["local", "beam"], default="local",
                   help="local (default): this machine, all cores, bounded memory; beam: "
                   "an Apache Beam pipeline (DirectRunner here, or Dataflow/Flink/Spark "
                   "with pipeline options after --)")
    p.add_argument("--num-shards", type=int, default=None, help="partitions (default: planned "
                   "from the input size and memory limit)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars (by default they are drawn only on a terminal)")
    p.add_argument("--verbose", action="store_true",
                   help="print where the time went, phase by phase (start-up and imports, "
                   "planning, worker start, map, sort, write, finish)")
    p.epilog = "Anything after a bare -- is passed to Apache Beam as pipeline options."


def _is_spec(source: str) -> bool:
    """A SOURCE that is not a file: hf:NAME, tfds:NAME, stdlib: (hf://... is a file URL)."""
    return source.rstrip(":") == "stdlib" or (source.startswith(("hf:", "tfds:"))
                                              and "://" not in source)


def _run_build(args: argparse.Namespace) -> int:
    from fedgroups.engine.api import build
    from fedgroups.engine.phases import process_age

    started = process_age()  # interpreter start-up and imports, up to here

    kwargs: dict[str, Any] = {}
    key, paths = args.key, list(args.paths)
    out = paths.pop() if paths else None
    source: Any = paths[0] if len(paths) == 1 else paths or None
    if isinstance(source, list) and any(_is_spec(s) for s in source):
        raise FedGroupsError(f"several SOURCEs must all be files, globs or URLs; "
                             f"{next(s for s in source if _is_spec(s))!r} is a source of its "
                             "own: give it alone")
    if args.recipe:
        from fedgroups.recipes import get_recipe
        if source is not None or out is None:
            raise FedGroupsError("with --recipe, give only OUT: fedgroups build --recipe NAME OUT")
        options = {}
        for item in args.recipe_option:
            name, eq, value = item.partition("=")
            if not eq:
                raise FedGroupsError(f"--recipe-option {item!r}: write KEY=VALUE")
            options[name] = value
        source, key, kwargs = get_recipe(args.recipe).build_args(split=args.split, **options)
    if source is None or out is None or key is None:
        raise FedGroupsError("give SOURCE, OUT and --key (or --recipe NAME OUT); "
                             "see fedgroups build --help")
    pipeline_options = list(getattr(args, "pipeline_options", []) or [])
    kwargs.update(workers=args.workers, memory_limit=args.memory_limit,
                  overwrite=args.overwrite, engine=args.engine, format=args.format,
                  num_partitions=args.num_shards, pipeline_options=pipeline_options,
                  progress=False if args.quiet else None)
    # a recipe's own settings stand unless the user gave the flag
    if args.text_column is not None:
        kwargs["text_column"] = None if args.text_column == "none" else args.text_column
    if args.on_missing_key is not None:
        kwargs["on_missing_key"] = args.on_missing_key
    if args.split is not None:
        kwargs["split"] = args.split
    if args.group_columns is not None:
        kwargs["group_columns"] = args.group_columns
    if args.encoding_errors is not None:
        kwargs["encoding_errors"] = args.encoding_errors
    report = build(source, key, out, **kwargs)
    m = report.manifest
    rows = info_rows(m)[:7] + [
        ("time", f"{report.seconds:.1f} s ({report.examples_per_second:,.0f} examples/s)"),
        ("output", report.path),
    ]
    if m["source"].get("replaced_utf8_sequences"):
        rows.append(("replaced non-UTF-8", f"{m['source']['replaced_utf8_sequences']:,} "
                     f"sequences on {m['source']['lines_with_replacements']:,} lines (U+FFFD)"))
    for where in report.stats.get("drop_examples", []):
        rows.append(("dropped e.g. at", where))
    print(table(rows, title="build finished"))
    if getattr(args, "verbose", False):
        from fedgroups.engine.phases import format_phases

        phases = {"start-up and imports": started or 0.0, **report.stats.get("phases", {})}
        age = process_age()
        if started is not None and age is not None:
            phases["report"] = max(0.0, age - started - sum(report.stats.get("phases",
                                                                            {}).values()))
        print(format_phases(phases, age))
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from fedgroups.format.manifest import read_manifest

    m = read_manifest(args.path)
    if args.json:
        print(json.dumps({k: v for k, v in m.items() if k != "shards"} | {
            "shards": len(m["shards"])}, indent=2))
    else:
        print(table(info_rows(m), title=os.path.abspath(args.path)))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from fedgroups.format.verify import verify

    problems = verify(args.path)
    if problems:
        print(f"{args.path}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    from fedgroups.format.manifest import read_manifest
    t = read_manifest(args.path)["totals"]
    print(f"{args.path}: OK ({t['groups']:,} groups, {t['examples']:,} examples, "
          f"{t['shards']} shards; every checksum and count matches)")
    return 0


def _run_head(args: argparse.Namespace) -> int:
    import fedgroups as fg

    ds = fg.open(args.path)
    if args.group is not None:
        key: Any = args.group
        if ds.manifest["key"]["type"] == "int64":
            key = int(key)
        groups = [ds.group(key)]
    else:
        groups = [ds.group_at(i) for i in range(min(args.groups, len(ds)))]
    for g in groups:
        print(f"== group {g.key!r}: {g.num_examples:,} examples")
        for i, ex in enumerate(g):
            if i >= args.n:
                break
            shown = {k: (v[: args.width] + "…" if isinstance(v, str) and len(v) > args.width
                         else v) for k, v in ex.items()}
            print(json.dumps(shown, ensure_ascii=False, default=str))
    return 0


def make_parser(optional: bool = True) -> argparse.ArgumentParser:
    """The command's parser; ``optional=False`` leaves out the sub-commands of optional
    modules (stats, train, compare), whose imports a build or info does not need."""
    from fedgroups import __version__

    parser = argparse.ArgumentParser(prog="fedgroups", description=(
        "Group-structured datasets and federated simulation of language models."))
    parser.add_argument("--version", action="version", version=f"fedgroups {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build(sub)
    p = sub.add_parser("info", help="what a grouped dataset holds", description=(
        "Totals (groups, examples, bytes, words), the key, source, schema and how the "
        "dataset was built, from its manifest alone: nothing else is read."))
    p.add_argument("path", help="a grouped dataset directory")
    p.add_argument("--json", action="store_true", help="print the manifest (without shard list)")
    p = sub.add_parser("verify", help="re-check every checksum and count", description=(
        "Recompute the checksum of the index and of every shard file, check that the index "
        "entries tile each shard and that the keys in the shards match the index, and that "
        "all counts add up. Reads every byte; exits 1 listing each problem found."))
    p.add_argument("path", help="a grouped dataset directory")
    p = sub.add_parser("head", help="show the first examples of some groups", description=(
        "Print the first examples of a group (--group KEY), or of the first groups in key "
        "order, one JSON object per line; long strings are cut at --width."))
    p.add_argument("path", help="a grouped dataset directory")
    p.add_argument("--group", default=None, help="key of the group to show")
    p.add_argument("-n", type=int, default=5, help="examples per group")
    p.add_argument("--groups", type=int, default=3, help="groups to show without --group")
    p.add_argument("--width", type=int, default=120, help="cut strings at this many characters")
    if optional:
        _optional_parsers(sub)
    return parser


_CORE = ("build", "info", "verify", "head")
_OPTIONAL = {
    "stats": ("fedgroups.stats.cli", "add_stats_parser", "run_stats"),
    "train": ("fedgroups.fl.cli", "add_train_parser", "run_train"),
    "compare": ("fedgroups.fl.hierarchy.compare", "add_compare_parser", "run_compare"),
}


def _optional_parsers(sub: Any) -> None:
    import importlib

    for module, add, _ in _OPTIONAL.values():
        try:
            getattr(importlib.import_module(module), add)(sub)
        except ImportError:
            continue


def _exit_now(code: int) -> None:
    """End the ``fedgroups build`` process without the interpreter's teardown.

    Freeing every module pyarrow and pandas loaded takes longer than a small build (1.3-1.9 s
    against 0.06-0.13 s for os._exit, measured at load 45 on 2 cores). The build's files are
    closed and published and its worker pool shut down by now; only the streams need flushing.
    """
    if "logging" in sys.modules:
        import logging
        logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(optional=not (argv and argv[0] in _CORE))
    extra: list[str] = []
    if "--" in argv:  # the rest goes to Apache Beam untouched
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.pipeline_options = extra
    runners = {"build": _run_build, "info": _run_info, "verify": _run_verify, "head": _run_head}
    try:
        if args.command in runners:
            code = runners[args.command](args)
            if argv_given is None and args.command == "build" and args.engine == "local":
                _exit_now(code)
            return code
        import importlib
        module, _, run = _OPTIONAL[args.command]
        return int(getattr(importlib.import_module(module), run)(args) or 0)
    except FedGroupsError as e:
        print(f"fedgroups {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"fedgroups {args.command}: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fedgroups {args.command}: interrupted; nothing was published", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fedgroups head ... | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
