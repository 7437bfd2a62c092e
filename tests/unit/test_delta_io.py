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
