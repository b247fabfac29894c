"""Per-round metrics: appended to ``metrics.jsonl`` as they happen, mirrored to ``metrics.csv``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; write null so every reader can parse the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    def __init__(self, run_dir: Path) -> None:
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"

    def read(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        with self.jsonl.open() as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate(self, done: int) -> None:
        """Keep the rows of the first ``done`` rounds (``round`` counts rounds done)."""
        rows = [r for r in self.read() if r["round"] <= done]
        tmp = self.jsonl.with_suffix(".tmp")
        with tmp.open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        tmp.replace(self.jsonl)
        self.write_csv()

    def append(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def write_csv(self) -> None:
        """Rewrite the CSV from the JSONL (columns: the union of all rows' keys)."""
        rows = self.read()
        columns: list[str] = []
        for r in rows:
            columns.extend(k for k in r if k not in columns)
        tmp = self.csv.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.csv)


# --- record files on a resume ---------------------------------------------------------

JSONL_RECORDS = ("metrics.jsonl", "personalization.jsonl", "eval.jsonl", "attention.jsonl")


def repair_jsonl(path: Path) -> int:
    """Cut a last line a crash left unfinished; return the bytes dropped (0: none)."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data:
        return 0
    start = data.rfind(b"\n", 0, len(data) - 1) + 1  # where the last line begins
    try:
        json.loads(data[start:])
    except ValueError:
        path.write_bytes(data[:start])
        return len(data) - start
    if not data.endswith(b"\n"):  # whole, only its newline missing
        path.write_bytes(data + b"\n")
    return 0


def _truncate_jsonl(path: Path, done: int) -> None:
    """Keep the rows of rounds ``<= done`` (the rounds a checkpoint has)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["round"] <= done]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    tmp.replace(path)


def rewind_records(run_dir: Path, done: int, echo: Callable[[str], None]) -> None:
    """Resuming after ``done`` rounds: repair and cut every record file to those rounds."""
    for name in JSONL_RECORDS:
        dropped = repair_jsonl(run_dir / name)
        if dropped:
            echo(f"{name}: dropped an incomplete last line ({dropped} bytes)")
        _truncate_jsonl(run_dir / name, done)
