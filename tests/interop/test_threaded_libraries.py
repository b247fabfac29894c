"""Building with several forked workers in a process where JAX runs its threads.

JAX warns on every ``os.fork()``; fg.build's docstring says why the build is sound anyway
(the workers never call JAX). This checks it: the build finishes, in a fresh process with
JAX initialised, and its groups are right.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow


def test_build_with_workers_after_jax_started_its_threads(tmp_path):
    pytest.importorskip("jax")
    script = textwrap.dedent(f"""
        import json, jax.numpy as jnp
        jnp.arange(8).sum().block_until_ready()  # JAX's thread pools are running
        import fedgroups as fg
        rows = [{{"user": f"u{{i % 13}}", "text": f"t {{i}}"}} for i in range(5000)]
        fg.build(rows, "field:user", {str(tmp_path / "out")!r}, workers=2, num_partitions=4,
                 progress=False)
        ds = fg.open({str(tmp_path / "out")!r})
        assert ds.manifest["build"]["workers"] == 2, ds.manifest["build"]
        print(json.dumps({{g.key: g.num_examples for g in ds}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts == {f"u{k}": len(range(k, 5000, 13)) for k in range(13)}
