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
    """ASCII text of Zipf-distributed words, about ``nbytes`` long."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = rng.integers(2, 10, size=_VOCAB)
    vocab = ["".join(map(chr, rng.choice(letters, size=n))) for n in lengths]
    ids = np.minimum(rng.zipf(1.15, size=nbytes // 5) - 1, _VOCAB - 1)
    text = " ".join(np.asarray(vocab, dtype=object)[ids]).encode()
    return text[:nbytes]


def make_c4_like(out_dir: str, num_examples: int, *, num_files: int = 8, seed: int = 0,
                 mean_words: int = 200) -> list[str]:
    """Parquet files with columns url, text, timestamp: C4's shape, Zipf-distributed hosts."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean_bytes = mean_words * 6
    per_file = -(-num_examples // num_files)
    pool = np.frombuffer(_word_pool(rng, per_file * mean_bytes * 2 + (1 << 20)), dtype=np.uint8)
    num_hosts = max(10, num_examples // 20)
    paths = []
    for f in range(num_files):
        n = min(per_file, num_examples - f * per_file)
        if n <= 0:
            break
        lengths = np.clip(rng.normal(mean_bytes, mean_bytes / 3, size=n), 20,
                          None).astype(np.int64)
        start = int(rng.integers(0, len(pool) - lengths.sum()))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        data = pool[start:start + int(offsets[-1])].tobytes()
        text = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
        hosts = np.minimum(rng.zipf(1.3, size=n), num_hosts)
        host_names = pc.binary_join_element_wise(
            "site", pa.array(hosts).cast(pa.string()), ".example.com", "")
        doc = pa.array(np.arange(f * per_file, f * per_file + n)).cast(pa.string())
        urls = pc.binary_join_element_wise("https://", host_names, "/page/", doc, "")
        ts = pa.array(1_500_000_000 + rng.integers(0, 10**8, size=n), pa.timestamp("s"))
        path = os.path.join(out_dir, f"c4-{f:05d}.parquet")
        pq.write_table(pa.table({"url": urls, "text": text, "timestamp": ts}), path)
        paths.append(path)
    return paths


class PeakMemory:
    """Peak resident memory (sum over a process tree), sampled in a thread.

    Without ``pid_command`` it watches this process and its children while the ``with``
    block runs; with it, it runs that command to completion and watches its tree.
    """

    def __init__(self, interval: float = 0.05, pid_command: list[str] | None = None) -> None:
        self.interval = interval
        self.peak_rss = 0
        self.command = pid_command
        self.returncode = 0
        self.stdout = self.stderr = ""
        self._root = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = self._root
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.command is not None:
            import subprocess
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            self._root = psutil.Process(proc.pid)
            self._thread.start()
            self.stdout, self.stderr = proc.communicate()
            self.returncode = proc.returncode
            return self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
