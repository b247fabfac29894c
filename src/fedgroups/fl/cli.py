"""``fedgroups train CONFIG.yaml [--set key=value ...] [--resume RUN_DIR]``.

The lead's ``fedgroups/cli.py`` calls :func:`add_train_parser` and :func:`run_train`;
``python -m fedgroups.fl.cli train ...`` works on its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fedgroups.errors import FedGroupsError
from fedgroups.fl.config import ConfigError, TrainConfig, parse_config
from fedgroups.fl.errors import RunDirError


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
        folder = Path(args.resume)
        if not folder.exists():
            raise RunDirError(f"--resume {args.resume}: the folder does not exist")
        path = folder / "config.yaml"
        if not path.is_file():
            raise RunDirError(f"--resume {args.resume}: no config.yaml there; is it a run dir?")
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
    injected = (data.get("strategy") or {}).get("injected") \
        if isinstance(data.get("strategy"), dict) else None
    if injected is not None:
        raise ConfigError(
            f"{path}: the run was trained with a strategy given from Python ({injected}); "
            "the command line cannot rebuild it: resume it from Python with "
            "run(config, resume=True, strategy=...)")
    if args.quiet:
        overrides.append("run.progress=false")
    return parse_config(data, overrides)


INSTALL_HINT = ("fedgroups train needs PyTorch, tokenizers and PyYAML: "
                "pip install 'fedgroups[fl]' (or pip install torch tokenizers pyyaml)")
HEAVY = ("torch", "tokenizers", "yaml", "matplotlib", "numpy", "tqdm")


def _install_hint(e: ImportError) -> int:
    if e.name not in HEAVY:
        raise e
    print(f"fedgroups train: error: no module {e.name!r}. {INSTALL_HINT}", file=sys.stderr)
    return 2


def run_train(args: argparse.Namespace) -> int:
    """Check the config, the run folder and the optional packages first (no torch import:
    a mistake costs what ``--help`` costs), then train; returns the exit code."""
    try:
        import yaml  # noqa: F401
    except ImportError as e:
        return _install_hint(e)
    from fedgroups.fl import driver

    resume = bool(args.resume)
    overwrite = bool(getattr(args, "overwrite", False)) and not resume
    try:
        config = load_config(args)
        driver.check_before_start(config, resume=resume, overwrite=overwrite)
    except ConfigError as e:
        print(f"fedgroups train: config error: {e}", file=sys.stderr)
        return 2
    except FedGroupsError as e:
        print(f"fedgroups train: error: {e}", file=sys.stderr)
        return 2
    allow = bool(getattr(args, "allow_dataset_change", False))
    try:
        if config.hierarchy is not None:  # federations of federations (docs/hierarchy.md)
            from fedgroups.fl.hierarchy.runner import run_cli

            return run_cli(config, backend=args.backend, resume=resume, overwrite=overwrite,
                           allow_dataset_change=allow)
        from fedgroups.fl.simulation import run, summary_table
    except ImportError as e:
        return _install_hint(e)

    def train() -> Any:
        return run(config, backend=args.backend, resume=resume, overwrite=overwrite,
                   echo=lambda m: print(m, file=sys.stderr), allow_dataset_change=allow)

    def report(result: Any) -> None:
        if result.rows:
            print(summary_table(result.rows, config.algorithm.name))
            print(f"metrics: {result.run_dir / 'metrics.csv'}")
            for p in result.plots:
                print(f"plot:    {p}")

    return driver.exit_code(train, report, Path(config.output_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedgroups")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    args = parser.parse_args(argv)
    return run_train(args)


if __name__ == "__main__":
    sys.exit(main())
