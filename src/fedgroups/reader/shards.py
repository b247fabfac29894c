"""Opening shard files: checked against the manifest, row groups located by row number."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedgroups.errors import CorruptDatasetError


@dataclass
class ShardHandle:
    path: str
    file: pq.ParquetFile
    row_group_starts: np.ndarray  # first row of each row group, plus the total at the end

    def read_rows(self, first: int, count: int, columns: list[str] | None) -> Iterator[pa.Table]:
        """Rows [first, first+count) one row group at a time (bounded memory)."""
        stop = first + count
        rg = int(np.searchsorted(self.row_group_starts, first, side="right")) - 1
        while first < stop:
            rg_start = int(self.row_group_starts[rg])
            rg_stop = int(self.row_group_starts[rg + 1])
            try:
                table = self.file.read_row_group(rg, columns=columns)
            except (OSError, pa.ArrowException) as e:
                raise CorruptDatasetError(
                    f"{self.path}: row group {rg} cannot be read ({e}); the shard is damaged — "
                    "run `fedgroups verify` and rebuild the dataset") from e
            lo = first - rg_start
            hi = min(stop, rg_stop) - rg_start
            yield table.slice(lo, hi - lo)
            first = rg_start + hi
            rg += 1


class ShardCache:
    """Lazily opened shard files, shared by all groups of a dataset (thread-safe)."""

    def __init__(self, root: str, shards: list[dict]) -> None:
        self.root = root
        self.shards = shards
        self._open: dict[int, ShardHandle] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get(self, shard: int) -> ShardHandle:
        if self._pid != os.getpid():  # forked (DataLoader worker): reopen, never share handles
            self._open = {}
            self._lock = threading.Lock()
            self._pid = os.getpid()
        h = self._open.get(shard)
        if h is None:
            with self._lock:
                h = self._open.get(shard) or self._open_shard(shard)
                self._open[shard] = h
        return h

    def _open_shard(self, shard: int) -> ShardHandle:
        info = self.shards[shard]
        path = os.path.join(self.root, info["path"])
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise CorruptDatasetError(f"{path}: shard file is missing ({e.strerror})") from e
        if size != info["file_bytes"]:
            raise CorruptDatasetError(
                f"{path}: {size} bytes on disk but the manifest says {info['file_bytes']}; "
                "the shard was truncated or altered — rebuild the dataset")
        try:
            f = pq.ParquetFile(path, page_checksum_verification=True)
        except (OSError, pa.ArrowException) as e:
            raise CorruptDatasetError(f"{path}: not a readable Parquet file ({e})") from e
        md = f.metadata
        if md.num_rows != info["num_rows"]:
            raise CorruptDatasetError(
                f"{path}: has {md.num_rows} rows but the manifest says {info['num_rows']}")
        counts = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ShardHandle(path, f, starts)
