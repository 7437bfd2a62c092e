"""Delta write helpers: conflict retry and partition replacement."""
from __future__ import annotations

import datetime as dt

import pytest

from jobs.common import delta_io


def test_conflicts_are_retried_then_raised_never_swallowed(monkeypatch):
    monkeypatch.setattr(delta_io.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: files were added")
        return "ok"
    assert delta_io.with_conflict_retry(flaky) == "ok" and len(calls) == 3

    def always():
        raise RuntimeError("ConcurrentAppendException")
    with pytest.raises(RuntimeError, match="ConcurrentAppendException"):
        delta_io.with_conflict_retry(always, attempts=3)

    other = []

    def broken():
        other.append(1)
        raise ValueError("schema mismatch")
    with pytest.raises(ValueError):
        delta_io.with_conflict_retry(broken)
    assert len(other) == 1


def test_replace_partitions_refuses_rows_outside_the_range(spark, tmp_path):
    df = spark.createDataFrame([(1, dt.date(2026, 10, 1)), (2, dt.date(2026, 10, 2))], "x int, ds date")
    path = str(tmp_path / "t")
    delta_io.replace_partitions(df, path, dt.date(2026, 10, 1), dt.date(2026, 10, 2))
    again = spark.createDataFrame([(3, dt.date(2026, 10, 2))], "x int, ds date")
    delta_io.replace_partitions(again, path, dt.date(2026, 10, 2), dt.date(2026, 10, 2))
    assert sorted(r["x"] for r in spark.read.format("delta").load(path).collect()) == [1, 3]
    with pytest.raises(Exception, match="replaceWhere|DELTA_REPLACE_WHERE_MISMATCH"):
        delta_io.replace_partitions(df, path, dt.date(2026, 10, 2), dt.date(2026, 10, 2))


def test_a_tables_version_and_rows_from_its_log_alone_equal_what_spark_reads(spark, tmp_path):
    """``log_figures`` (the run's summary, ``make status``): through checkpoints, partition overwrites and a
    delete with deletion vectors, the latest version and the live rows equal Delta's history and Spark's count."""
    from delta.tables import DeltaTable
    path = str(tmp_path / "t")
    assert delta_io.log_figures(path) is None
    df = spark.range(0, 100).selectExpr("id", "cast(id % 4 as string) as ds")
    (df.write.format("delta").partitionBy("ds").option("delta.checkpointInterval", "2")
     .option("delta.enableDeletionVectors", "true").save(path))
    for i in range(3):  # versions 1-3, a checkpoint at 2
        (spark.range(1000 * i, 1000 * i + 10 + i).selectExpr("id", "'1' as ds").write.format("delta")
         .mode("overwrite").option("replaceWhere", "ds = '1'").save(path))
    spark.range(5000, 5040).selectExpr("id", "'9' as ds").write.format("delta").mode("append").save(path)
    DeltaTable.forPath(spark, path).delete("id % 3 = 0 and ds = '9'")  # deletion vectors, not rewritten files
    version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    assert any(p.name.endswith(".checkpoint.parquet") for p in (tmp_path / "t" / "_delta_log").iterdir())
    assert delta_io.log_figures(path) == (version, spark.read.format("delta").load(path).count())
