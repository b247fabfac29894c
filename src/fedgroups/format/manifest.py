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
    for k in ("key", "schema", "shards", "index", "totals"):
        if k not in m:
            raise CorruptDatasetError(f"{path}: the manifest has no {k!r} entry")
    return m
