"""A group far larger than the memory we allow streams in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

import fedgroups as fg

GROUP_MB = 64


@pytest.fixture(scope="module")
def huge_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    n = GROUP_MB * 1024  # 1 KiB of incompressible-ish text per example
    text = pa.array([f"{i:08d}" + "abcdefghij" * 101 + f"{i * 7919 % 1000003:07d}"
                     for i in range(n)])
    table = pa.table({"user": pa.array(["huge"] * n), "i": pa.array(range(n)), "text": text})
    small = pa.table({"user": ["a", "b"], "i": [0, 0], "text": ["x", "y"]})
    out = str(tmp_path_factory.mktemp("huge") / "ds")
    fg.build(pa.concat_tables([table, small]), "field:user", out, overwrite=True,
             progress=False, workers=1)
    return out


CHILD = textwrap.dedent("""
    import json, resource, sys
    import pyarrow as pa
    import fedgroups as fg
    ds = fg.open(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pool = pa.default_memory_pool()
    rows = 0
    peak_arrow = 0
    for g in ds.groups(seed=0, prefetch=8, num_threads=2):
        for batch in g.batches(1000):
            rows += batch.num_rows
            peak_arrow = max(peak_arrow, pool.bytes_allocated())
    n_iter = sum(1 for _ in ds["huge"])  # python dicts, row group by row group
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "iter": n_iter, "peak_arrow": peak_arrow,
                      "pool_max": pool.max_memory(), "rss_growth_kb": after - before}))
""")


def test_huge_group_streams_in_bounded_memory(huge_path):
    out = subprocess.run([sys.executable, "-c", CHILD, huge_path], capture_output=True,
                         text=True, check=True, timeout=120)
    r = json.loads(out.stdout)
    n = GROUP_MB * 1024
    assert r["rows"] == n + 2 and r["iter"] == n
    budget = 24 << 20  # well under the 64+ MiB group
    assert r["pool_max"] < budget, r
    assert r["rss_growth_kb"] * 1024 < budget + (16 << 20), r
