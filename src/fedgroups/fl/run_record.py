"""What a run folder's ``config.yaml`` records, and what a ``--resume`` may change.

The record is the resolved config (every setting, defaults included; the hierarchy
parsed strictly; the algorithm with its resolved name and settings).  A strategy given
from Python is recorded by the qualified names of its pieces, so a resume from the CLI
cannot silently continue it as another algorithm.  A resume may change only
``SAFE_ON_RESUME`` (docs/training.md, "Resuming").  Module import stays light (no torch).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedgroups.fl.errors import ConfigError

# Settings a --resume may change: they steer when things happen and how a run is shown,
# never what is trained (docs/training.md, "Resuming").
SAFE_ON_RESUME = ("output_dir", "rounds", "eval.every", "eval.batch_size",
                  "personalization.every", "run.*")


def light_config_dict(config: Any) -> dict[str, Any]:
    """The resolved config as ``config.yaml`` records it (the hierarchy parsed strictly)."""
    from fedgroups.fl.config import to_dict

    if config.hierarchy is None:
        return to_dict(config)
    from fedgroups.fl.hierarchy.config import parse_hierarchy, resolved_config_dict

    return resolved_config_dict(config, parse_hierarchy(config.hierarchy))


def record_algorithm(record: dict[str, Any], strategy: Any, injected: bool) -> dict[str, Any]:
    """``record`` with the algorithm as resolved: its name and every setting, defaults
    included (a factory's algorithm is recorded by the name it gives itself)."""
    algo = getattr(strategy, "algorithm", None)
    if injected or algo is None or not isinstance(record.get("algorithm"), Mapping):
        return record
    section = dict(record["algorithm"])
    section["name"] = getattr(algo, "name", section.get("name"))
    settings = algo.settings() if callable(getattr(algo, "settings", None)) else {}
    section["params"] = {**(section.get("params") or {}), **dict(settings)}
    return {**record, "algorithm": section}


def _qualname(obj: Any) -> str:
    target = obj.func if hasattr(obj, "func") and hasattr(obj, "keywords") else obj
    if not callable(target) or not hasattr(target, "__qualname__"):
        target = type(target)
    return f"{getattr(target, '__module__', '?')}:{target.__qualname__}"


def describe_strategy(strategy: Any) -> str:
    """A Python-given strategy, by the qualified names of its pieces (recorded in config.yaml)."""
    import dataclasses

    def name(value: Any) -> str:
        if value is None or isinstance(value, (str, int, float, bool)):
            return repr(value) if not isinstance(value, str) else value
        if isinstance(value, (tuple, list)):
            return "[" + ", ".join(name(v) for v in value) + "]"
        return _qualname(value)

    if not dataclasses.is_dataclass(strategy):
        return _qualname(strategy)
    parts = [f"{f.name}={name(getattr(strategy, f.name))}" for f in dataclasses.fields(strategy)]
    return f"{_qualname(strategy)}({'; '.join(parts)})"


def config_record(config_dict: dict[str, Any], strategy: Any = None) -> dict[str, Any]:
    """What ``config.yaml`` holds: the resolved config; a strategy given from Python replaces
    the ``strategy`` section by ``{injected: <its description>}``."""
    out = dict(config_dict)
    if strategy is not None:
        out["strategy"] = {"injected": describe_strategy(strategy)}
    return out


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): data}


def _safe(setting: str) -> bool:
    return any(fnmatch.fnmatchcase(setting, p) for p in SAFE_ON_RESUME)


def config_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(setting, recorded, now) for each setting that differs (a setting the record lacks,
    from an older fedgroups, is not a change)."""
    old, new = _flatten(saved), _flatten(now)
    return [(k, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if k in old and old.get(k) != new.get(k)]


def check_resume_config(run_dir: Path, saved: Mapping[str, Any], now: Mapping[str, Any],
                        resolved: bool = True) -> None:
    """Refuse a resume that would change what is trained (one line, every such setting).

    ``resolved`` False: ``now`` does not know the algorithm's resolved name and settings
    yet (that needs its code imported): those are left to the check after
    :func:`record_algorithm`."""
    was, is_ = (saved.get("strategy") or {}), (now.get("strategy") or {})
    if "injected" in was or "injected" in is_:
        if was.get("injected") != is_.get("injected"):
            old = was.get("injected") or "the config's algorithm/strategy sections"
            new = is_.get("injected") or "the config's algorithm/strategy sections"
            raise ConfigError(f"--resume {run_dir}: the run was trained with strategy {old}; "
                              f"this resume would use {new}: resume with the run's strategy")
    bad = [c for c in config_changes(saved, now) if not _safe(c[0])
           and (resolved or not (c[0] == "algorithm.name" or c[0].startswith("algorithm.params")))]
    if bad:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in bad)
        raise ConfigError(f"--resume {run_dir}: cannot change {listed} (a resume may change "
                          f"only {', '.join(SAFE_ON_RESUME)}); start a new run for other settings")


def read_recorded_config(run_dir: Path) -> dict[str, Any] | None:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else None


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    import yaml

    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    tmp.replace(path)
