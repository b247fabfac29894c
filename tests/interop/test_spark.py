"""Spark reads a dataset's root: the examples, not the index (skipped without Java).

pyspark is not a dependency (it needs a JVM): ``pip install pyspark`` and a Java 17+ on
PATH or JAVA_HOME run this test.
"""

from __future__ import annotations

import collections
import os
import shutil

import pytest

from tests.interop.conftest import N

pytestmark = pytest.mark.slow


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if _java() is None:
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME): Spark cannot start")
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("fedgroups-interop")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "1").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.parametrize("options", [{}, {"recursiveFileLookup": "true"}],
                         ids=["plain", "recursive"])
def test_spark_reads_root(spark, built, counts, options):
    """``spark.read.parquet(OUT)`` reads the shards at the root and skips ``.fedgroups/``
    (a ``data/`` subfolder would need ``recursiveFileLookup``)."""
    df = spark.read.options(**options).parquet(str(built))
    assert not {"part", "shard", "first_row", "num_rows"} & set(df.columns)
    got = dict(collections.Counter(r["__group__"] for r in df.select("__group__").collect()))
    assert sum(got.values()) == N
    assert got == counts
