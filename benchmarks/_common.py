"""Shared helpers for the benchmark scripts: synthetic C4-like data and memory sampling."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_VOCAB = 20_000


def _word_pool(rng: np.random.Generator, nbytes: int) -> bytes:
    """ASCII text of Zipf-distributed words separated by spaces, ``nbytes`` long."""
    lengths = rng.integers(2, 10, size=_VOCAB)
    letters = rng.integers(ord("a"), ord("z") + 1, size=int(lengths.sum()), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ids = np.minimum(rng.zipf(1.15, size=nbytes // 4 + 16) - 1, _VOCAB - 1)
    wl = lengths[ids] + 1  # each word and its space
    ends = np.cumsum(wl)
    k = int(np.searchsorted(ends, nbytes)) + 1
    ids, wl, ends = ids[:k], wl[:k], ends[:k]
    pos = np.arange(int(ends[-1])) - np.repeat(ends - wl, wl)  # place within the word
    src = np.repeat(starts[ids], wl) + np.minimum(pos, np.repeat(wl - 2, wl))
    out = letters[src]
    out[ends - 1] = ord(" ")
    return out[:nbytes].tobytes()


POOL_BYTES = 64 << 20  # the text pool rows are cut from (reused: memory stays flat)
SLICE_ROWS = 10_000  # rows cut from one random place of the pool
BATCH_ROWS = 100_000  # rows written at a time (one Parquet row group each)


def make_c4_like(out_dir: str, num_examples: int, *, num_files: int = 8, seed: int = 0,
                 mean_words: int = 200) -> list[str]:
    """Parquet files with columns url, text, timestamp: C4's shape, Zipf-distributed hosts.

    Generated and written BATCH_ROWS at a time from one bounded text pool, so 20M examples
    (tens of GB of text) need no more memory than 1M.
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean_bytes = mean_words * 6
    per_file = -(-num_examples // num_files)
    pool_bytes = min(POOL_BYTES, SLICE_ROWS * mean_bytes * 4 + (1 << 20))
    pool = np.frombuffer(_word_pool(rng, pool_bytes), dtype=np.uint8)
    num_hosts = max(10, num_examples // 20)
    paths = []
    for f in range(num_files):
        n_file = min(per_file, num_examples - f * per_file)
        if n_file <= 0:
            break
        path = os.path.join(out_dir, f"c4-{f:05d}.parquet")
        with pq.ParquetWriter(path, _SCHEMA) as writer:
            for first in range(0, n_file, BATCH_ROWS):
                n = min(BATCH_ROWS, n_file - first)
                writer.write_table(pa.concat_tables(
                    _c4_batch(rng, pool, min(SLICE_ROWS, n - i), f * per_file + first + i,
                              mean_bytes, num_hosts) for i in range(0, n, SLICE_ROWS)),
                    row_group_size=BATCH_ROWS)
        paths.append(path)
    return paths


_SCHEMA = pa.schema([("url", pa.string()), ("text", pa.string()),
                     ("timestamp", pa.timestamp("s"))])


def _c4_batch(rng: np.random.Generator, pool: np.ndarray, n: int, first_doc: int,
              mean_bytes: int, num_hosts: int) -> pa.Table:
    lengths = np.clip(rng.normal(mean_bytes, mean_bytes / 3, size=n), 20,
                      None).astype(np.int64)
    lengths = np.minimum(lengths, len(pool) // (2 * n))
    # consecutive rows of the pool from a random place
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    start = int(rng.integers(0, len(pool) - int(offsets[-1])))
    data = pool[start:start + int(offsets[-1])].tobytes()
    text = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    hosts = np.minimum(rng.zipf(1.3, size=n), num_hosts)
    host_names = pc.binary_join_element_wise(
        "site", pa.array(hosts).cast(pa.string()), ".example.com", "")
    doc = pa.array(np.arange(first_doc, first_doc + n)).cast(pa.string())
    urls = pc.binary_join_element_wise("https://", host_names, "/page/", doc, "")
    ts = pa.array(1_500_000_000 + rng.integers(0, 10**8, size=n), pa.timestamp("s"))
    return pa.table({"url": urls, "text": text, "timestamp": ts}, schema=_SCHEMA)


def dir_bytes(path: str) -> int:
    """Bytes of the files under ``path`` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


class PeakMemory:
    """Peak resident memory (sum over a process tree), sampled in a thread; also the tree's
    CPU seconds (each process's last sample: a child's CPU after its last sample is missed)
    and the wall time.

    Without ``pid_command`` it watches this process and its children while the ``with``
    block runs; with it, it runs that command to completion and watches its tree.
    """

    def __init__(self, interval: float = 0.05, pid_command: list[str] | None = None) -> None:
        self.interval = interval
        self.peak_rss = 0
        self.command = pid_command
        self.returncode = 0
        self.stdout = self.stderr = ""
        self.wall = 0.0
        self._cpu: dict[int, float] = {}
        self._root = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = self._root
        total = 0
        try:
            tree = [me, *me.children(recursive=True)]
        except psutil.Error:  # a process of the tree ended while it was being listed
            tree = [me]
        for p in tree:
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
                self._cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return total

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._t0 = time.perf_counter()
        if self.command is not None:
            import subprocess
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            self._root = psutil.Process(proc.pid)
            self._thread.start()
            self.stdout, self.stderr = proc.communicate()
            self.returncode = proc.returncode
            self.wall = time.perf_counter() - self._t0
            return self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.command is None:
            self.wall = time.perf_counter() - self._t0
