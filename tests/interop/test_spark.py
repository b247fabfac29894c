"""Spark reads a dataset's root: the examples, not the index (skipped without Java).

pyspark is in the ``dev`` extra; it needs a Java 17+ on PATH or JAVA_HOME, without which
these tests skip. One local[1] session for the module: starting the JVM is most of the
time (~15-35 s on 2 busy cores), so the JIT is kept to its quick tier for these few queries.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.interop.conftest import N

pytestmark = [pytest.mark.slow,  # the JVM's start
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")]


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def test_pyspark_is_in_the_dev_extra():
    """What CI installs (``.[all,dev]``) runs these tests instead of skipping them."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    dev = re.search(r"^dev = \[(.*?)\]", pyproject, flags=re.S | re.M)
    assert dev and '"pyspark' in dev.group(1), "pyspark is not in pyproject's dev extra"


@pytest.fixture(scope="module")
def spark():
    if _java() is None:
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME): Spark cannot start")
    if os.environ.get("CI"):
        import pyspark  # noqa: F401 - CI installs the dev extra: run, do not skip
    else:
        pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("fedgroups-interop")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               # a short-lived driver: C1 only and the serial GC start faster (~1.5x here)
               .config("spark.driver.extraJavaOptions",
                       "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
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
