"""Small tools for the adversarial tests: datasets told apart by content, read without
the reader (so a reader bug cannot hide a format bug), builds run and killed in a
subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from fedgroups.format.layout import manifest_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rows(tag: str, n: int = 60) -> list[dict]:
    """Examples whose text says which build they belong to; same sizes for every tag of
    the same length (so files of two builds can have equal sizes)."""
    return [{"user": f"u{i % 4}", "text": f"{tag} example {i:04d}"} for i in range(n)]


def write_jsonl(path: str, examples: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in examples:
            f.write(json.dumps(r) + "\n")
    return path


def content(out: str) -> list[str]:
    """Every example's text in the dataset at ``out``, read from the files the manifest
    lists (plain pyarrow), sorted."""
    with open(manifest_path(out), encoding="utf-8") as f:
        m = json.load(f)
    texts: list[str] = []
    for s in m["shards"]:
        texts += pq.read_table(os.path.join(out, s["path"]), columns=["text"]).column(
            "text").to_pylist()
    return sorted(texts)


def tags(out: str) -> set[str]:
    return {t.split()[0] for t in content(out)}


def run_build(source: str, out: str, *, fault: str | None = None, exchange: bool = True,
              overwrite: bool = True) -> subprocess.CompletedProcess:
    """``fg.build(source, "field:user", out)`` in a fresh process, killed at ``fault``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGROUPS_TEST_")}
    env["FEDGROUPS_PROGRESS"] = "0"
    if fault:
        env["FEDGROUPS_TEST_FAULT"] = fault
    if not exchange:
        env["FEDGROUPS_TEST_NO_EXCHANGE"] = "1"
    code = ("import sys, fedgroups as fg; fg.build(sys.argv[1], 'field:user', sys.argv[2], "
            f"overwrite={overwrite}, workers=1, progress=False)")
    return subprocess.run([sys.executable, "-c", code, source, out], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def run_python(code: str, *args: str, fault: str | None = None,
               exchange: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGROUPS_TEST_")}
    if fault:
        env["FEDGROUPS_TEST_FAULT"] = fault
    if not exchange:
        env["FEDGROUPS_TEST_NO_EXCHANGE"] = "1"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def leftovers(out: str) -> list[str]:
    parent, name = os.path.split(os.path.abspath(out))
    return sorted(e for e in os.listdir(parent) if e.startswith(f".{name}.fedgroups-"))


def run_publish(prepared: str, out: str, *, fault: str | None = None,
                exchange: bool = True) -> subprocess.CompletedProcess:
    """Publish the finished dataset at ``prepared`` over ``out`` in a fresh process (as a
    build's last step does: from its own staging folder), killed at ``fault``; much
    lighter than a whole build."""
    code = ("import os, sys; from fedgroups.format.publish import make_staging, publish; "
            "st = make_staging(sys.argv[2]); os.rmdir(st); os.rename(sys.argv[1], st); "
            "publish(st, sys.argv[2], True)")
    return run_python(code, prepared, out, fault=fault, exchange=exchange)
