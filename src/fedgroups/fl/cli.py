"""``fedgroups train CONFIG.yaml [--set key=value ...] [--resume RUN_DIR]``.

The lead's ``fedgroups/cli.py`` calls :func:`add_train_parser` and :func:`run_train`;
``python -m fedgroups.fl.cli train ...`` works on its own.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from fedgroups.errors import FedGroupsError
from fedgroups.fl.config import ConfigError, TrainConfig, parse_config


def add_train_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="simulate federated training of a language model",
        description="Simulate federated training of a transformer LM on a grouped dataset. "
        "See docs/training.md for every setting.",
    )
    p.add_argument("config", nargs="?", help="YAML run config (optional with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set rounds=60 --set client.lr=1e-3")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--backend", choices=["sequential", "distributed"], default="sequential",
                   help="'distributed' splits each cohort over torch.distributed ranks "
                   "(launch with torchrun)")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (--no-progress is the old name)")
    p.add_argument("--allow-dataset-change", action="store_true",
                   help="with --resume: continue even if data.path now holds another dataset "
                   "than the checkpoint was trained on")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in output_dir instead of refusing")


def load_config(args: argparse.Namespace) -> TrainConfig:
    import yaml

    overrides = list(args.overrides)
    if args.resume:
        path = Path(args.resume) / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"--resume {args.resume}: no config.yaml there; is it a run dir?")
        overrides.append(f"output_dir={args.resume}")
    elif args.config:
        path = Path(args.config)
    else:
        raise ConfigError("give a CONFIG.yaml, or --resume RUN_DIR")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of settings")
    if args.quiet:
        overrides.append("run.progress=false")
    return parse_config(data, overrides)


INSTALL_HINT = ("fedgroups train needs PyTorch, tokenizers and PyYAML: "
                "pip install 'fedgroups[fl]' (or pip install torch tokenizers pyyaml)")


def run_train(args: argparse.Namespace) -> int:
    from fedgroups.fl.errors import NonFiniteLossError

    try:
        import yaml  # noqa: F401

        from fedgroups.fl.simulation import run, summary_table
    except ImportError as e:
        if e.name not in ("torch", "tokenizers", "yaml", "matplotlib", "numpy"):
            raise
        print(f"fedgroups train: error: no module {e.name!r}. {INSTALL_HINT}", file=sys.stderr)
        return 2

    try:
        config = load_config(args)
    except ConfigError as e:
        print(f"fedgroups train: config error: {e}", file=sys.stderr)
        return 2
    if Path(config.output_dir).exists() and not Path(config.output_dir).is_dir():
        print(f"fedgroups train: error: output_dir {config.output_dir} is a file, not a "
              "directory; choose another output_dir", file=sys.stderr)
        return 2
    if getattr(args, "overwrite", False) and not args.resume:
        old = Path(config.output_dir)
        if old.exists():
            markers = ("config.yaml", "metrics.jsonl", "checkpoints")
            if not any((old / m).exists() for m in markers):
                print(f"fedgroups train: error: --overwrite: {old} is not a run directory; "
                      "remove it yourself if that is intended", file=sys.stderr)
                return 2
            shutil.rmtree(old)
    if config.hierarchy is not None:  # federations of federations (docs/hierarchy.md)
        from fedgroups.fl.hierarchy.runner import run_cli

        try:
            return run_cli(config, backend=args.backend, resume=bool(args.resume))
        except KeyboardInterrupt:
            print(f"fedgroups train: interrupted. {resume_hint(Path(config.output_dir))}",
                  file=sys.stderr)
            return 130
    try:
        result = run(config, backend=args.backend, resume=bool(args.resume),
                     echo=lambda m: print(m, file=sys.stderr),
                     allow_dataset_change=getattr(args, "allow_dataset_change", False))
    except KeyboardInterrupt:
        print(f"fedgroups train: interrupted. {resume_hint(Path(config.output_dir))}",
              file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        print(f"fedgroups train: {e}", file=sys.stderr)
        return 1
    except (FedGroupsError, FileNotFoundError) as e:
        print(f"fedgroups train: error: {e}", file=sys.stderr)
        return 2
    if result.rows:
        print(summary_table(result.rows, config.algorithm.name))
        print(f"metrics: {result.run_dir / 'metrics.csv'}")
        for p in result.plots:
            print(f"plot:    {p}")
    return 0


def resume_hint(run_dir: Path) -> str:
    """What an interrupted run left behind, and the command to continue it."""
    found = sorted((run_dir / "checkpoints").glob("round_*.pt"))
    if not found:
        return f"No checkpoint was written yet in {run_dir}; start the run again."
    return (f"The latest checkpoint is {found[-1]}; continue with: "
            f"fedgroups train --resume {run_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedgroups")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    args = parser.parse_args(argv)
    return run_train(args)


if __name__ == "__main__":
    sys.exit(main())
