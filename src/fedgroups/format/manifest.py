"""manifest.json: what a dataset is, written last; a directory without one is not a dataset."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
from typing import Any

import pyarrow as pa

from fedgroups.errors import CorruptDatasetError, NotADatasetError
from fedgroups.format.spec import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE

_CHUNK = 4 << 20


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    return {
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "arrow_ipc_base64": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
    }


def schema_from_json(obj: dict[str, Any]) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(obj["arrow_ipc_base64"])))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json_atomic(path: str, obj: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(root: str) -> dict[str, Any]:
    from fedgroups.format.layout import manifest_path
    path = manifest_path(root)  # format v2's, or a v1 dataset's at the root
    if not os.path.isdir(root):
        raise NotADatasetError(f"{root}: no such directory")
    if not os.path.exists(path):
        raise NotADatasetError(
            f"{root} is not a grouped dataset: it has no {MANIFEST_FILE} (an unfinished or "
            "interrupted build leaves none); build it again"
        )
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise CorruptDatasetError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise NotADatasetError(f"{path}: not a fedgroups manifest (format is {m.get('format')!r})"
                               if isinstance(m, dict) else f"{path}: not a fedgroups manifest")
    version = m.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NotADatasetError(
            f"{path}: format version {version!r} is newer than this fedgroups reads "
            f"({FORMAT_VERSION}); upgrade fedgroups"
        )
    problems = manifest_problems(m)
    if problems:
        raise CorruptDatasetError(f"{path}: the manifest is damaged: {'; '.join(problems[:5])}"
                                  " — rebuild the dataset (or restore its manifest)")
    return m


TOTALS = ("groups", "parts", "examples", "bytes", "words", "shards", "dropped_examples",
          "largest_group_examples")
_FILE_FIELDS = ("num_rows", "file_bytes")


def safe_relpath(p: object) -> bool:
    """A plain relative path inside the dataset: no absolute path, drive, ``..``, ``.``,
    empty part, backslash or NUL."""
    if not isinstance(p, str) or not p or "\\" in p or "\0" in p or ":" in p:
        return False
    return not p.startswith("/") and all(part not in ("", ".", "..") for part in p.split("/"))


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def manifest_problems(m: dict[str, Any]) -> list[str]:
    """What is malformed in a manifest's own structure (its agreement with the files is
    ``verify``'s work): every entry a reader relies on, with the right type."""
    from fedgroups.format.spec import KEY_COLUMN, KEY_TYPES, is_build_id

    problems = [f"no {k!r} entry" for k in ("key", "schema", "shards", "index", "totals")
                if k not in m]
    if problems:
        return problems
    if "build_id" in m and not is_build_id(m["build_id"]):
        problems.append(f"build_id {m['build_id']!r} is not 32 hex digits")
    key = m["key"]
    if not isinstance(key, dict) or key.get("type") not in KEY_TYPES \
            or key.get("column") != KEY_COLUMN:
        problems.append(f"key {key!r} has no valid type and column")
    totals = m["totals"]
    if not isinstance(totals, dict):
        problems.append("totals is not an object")
    else:
        problems += [f"totals.{k} is {totals.get(k)!r}, not a count" for k in TOTALS
                     if not _count(totals.get(k))]
    files = [("index", m["index"])]
    if not isinstance(m["shards"], list):
        problems.append("shards is not a list")
    else:
        files += [(f"shards[{i}]", s) for i, s in enumerate(m["shards"])]
    seen: set[str] = set()
    for where, f in files:
        if not isinstance(f, dict):
            problems.append(f"{where} is not an object")
            continue
        if not safe_relpath(f.get("path")):
            problems.append(f"{where}.path {f.get('path')!r} is not a plain relative path "
                            "inside the dataset")
        elif f["path"] in seen:
            problems.append(f"{where}.path {f['path']!r} is listed twice")
        seen.add(str(f.get("path")))
        fields = _FILE_FIELDS + (("num_bytes",) if where != "index" else ())
        problems += [f"{where}.{k} is {f.get(k)!r}, not a count" for k in fields
                     if not _count(f.get(k))]
        sha = f.get("sha256")
        if not (isinstance(sha, str) and len(sha) == 64
                and all(c in "0123456789abcdef" for c in sha)):
            problems.append(f"{where}.sha256 is not 64 hex digits")
    schema = m["schema"]
    try:
        fields = schema_from_json(schema)
        if KEY_COLUMN not in fields.names:
            problems.append(f"schema has no {KEY_COLUMN!r} column")
    except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as e:  # IPC damage
        problems.append(f"schema does not decode ({type(e).__name__}: {e})")
    return problems
