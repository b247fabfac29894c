"""A single group larger than the memory limit builds whole, within the limit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

import fedgroups as fg

LIMIT_MB = 300
BUILD = textwrap.dedent("""
    import json, sys
    import fedgroups as fg
    r = fg.build(sys.argv[1], "field:user", sys.argv[2], workers=1, memory_limit=sys.argv[3],
                 shard_size="128MB", progress=False)
    print(json.dumps(r.manifest["totals"]))
""")


def _write_input(path, rows: int, row_bytes: int) -> None:
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, pa.schema([("user", pa.string()), ("i", pa.int64()),
                                           ("text", pa.string())])) as w:
        for start in range(0, rows, 20_000):
            n = min(20_000, rows - start)
            data = rng.integers(97, 123, size=n * row_bytes, dtype=np.uint8)
            data[::7] = 32  # words
            offsets = np.arange(0, (n + 1) * row_bytes, row_bytes, dtype=np.int32)
            text = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()),
                                               pa.py_buffer(data.tobytes()))
            user = ["giant"] * n
            user[0] = f"small{start}"
            w.write_table(pa.table({"user": user, "i": np.arange(start, start + n),
                                    "text": text}), row_group_size=5_000)


def test_group_larger_than_memory_limit(tmp_path):
    rows, row_bytes = 400_000, 1_000  # ~400 MB of text in one group, limit 256 MB
    _write_input(tmp_path / "in.parquet", rows, row_bytes)
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(tmp_path / "in.parquet"), str(tmp_path / "out"),
         f"{LIMIT_MB}MB"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak = max(peak, sum(p.memory_info().rss
                                     for p in [root, *root.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    out, err = proc.communicate(timeout=300)
    done.set()
    t.join()
    assert proc.returncode == 0, err
    totals = json.loads(out.strip().splitlines()[-1])
    assert totals["examples"] == rows
    assert peak < LIMIT_MB * 2**20, f"peak RSS {peak / 2**20:.0f} MiB over {LIMIT_MB} MiB"
    ds = fg.open(tmp_path / "out")
    giant = ds.group("giant")
    assert giant.num_examples == rows - 20
    assert len(giant.parts) >= 3  # larger than a shard file: recorded in parts
    # whole and in source order, streamed one row group at a time
    expected = (i for i in range(rows) if i % 20_000)
    for table in giant.tables(columns=["i"]):
        assert table.column("i").to_pylist() == [next(expected) for _ in range(table.num_rows)]
    assert next(expected, None) is None
