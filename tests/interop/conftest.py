"""A small dataset built once per module, and what fedgroups says its groups hold."""

from __future__ import annotations

import pytest

import fedgroups as fg

N = 700
USERS = 7


def rows() -> list[dict]:
    return [{"user": f"u{i % USERS}", "text": f"text number {i}", "n": i} for i in range(N)]


@pytest.fixture(scope="module", params=[1, 3], ids=["1shard", "3shards"])
def built(request, tmp_path_factory):
    """A dataset with 1 or 3 shard files (one shard is the case where a reader that
    infers the format from the most common extension could pick the manifest's)."""
    out = tmp_path_factory.mktemp("interop") / "ds"
    fg.build(rows(), "field:user", out, num_partitions=request.param, workers=1,
             progress=False)
    return out


@pytest.fixture(scope="module")
def counts(built) -> dict[str, int]:
    """Examples per group as fedgroups reads them (what every other reader must give)."""
    ds = fg.open(built)
    return {g.key: g.num_examples for g in ds}
