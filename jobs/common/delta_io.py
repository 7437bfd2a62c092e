"""Delta reads pinned to a version, partition-replacing writes, and a retry on write conflicts."""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable, TypeVar

T = TypeVar("T")
CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
             "ConcurrentTransactionException", "ProtocolChangedException", "MetadataChangedException",
             "DELTA_CONCURRENT")


def is_delta(spark, path: str) -> bool:
    from delta.tables import DeltaTable
    return DeltaTable.isDeltaTable(spark, path)


def latest_version(spark, path: str) -> int | None:
    if not is_delta(spark, path):
        return None
    from delta.tables import DeltaTable
    return int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])


def commit_rows(spark, path: str, version: int | None, before: int | None) -> int | None:
    """Rows that commit ``version`` wrote (Delta's operation metrics); 0 if the write made no new commit
    (``version == before``), None if the commit does not say."""
    if version is None or version == before:
        return 0
    from delta.tables import DeltaTable
    hist = DeltaTable.forPath(spark, path).history().where(f"version = {version}").collect()
    metrics = (hist[0]["operationMetrics"] or {}) if hist else {}
    return int(metrics["numOutputRows"]) if "numOutputRows" in metrics else None


def read_pinned(spark, path: str, reads: dict[str, int] | None = None, name: str | None = None):
    """Read the table at its current version and record that version (lineage): the step then sees one
    consistent snapshot even if a concurrent writer commits while it runs."""
    version = latest_version(spark, path)
    if version is None:
        from jobs.common.errors import DataError
        raise DataError(f"table {name or path} does not exist at {path}: run the step that writes it first")
    if reads is not None:
        reads[name or path] = version
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def ds_predicate(start: dt.date, end: dt.date, col: str = "ds") -> str:
    return f"{col} >= DATE'{start.isoformat()}' AND {col} <= DATE'{end.isoformat()}'"


def with_conflict_retry(fn: Callable[[], T], attempts: int = 5, base_sleep: float = 0.5) -> T:
    """Retry a Delta write that lost an optimistic-concurrency race. Other errors propagate at once; the
    last conflict propagates too: a conflict is retried, never swallowed."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # py4j / pyspark wrap the JVM exception; match on its class name
            if i == attempts - 1 or not any(c in str(e) for c in CONFLICTS):
                raise
            kind = next(c for c in CONFLICTS if c in str(e))
            print(f"delta: write lost a concurrent commit race ({kind}); retry {i + 1} of {attempts - 1}")
            time.sleep(base_sleep * 2 ** i)
    raise AssertionError("unreachable")


def replace_partitions(df, path: str, start: dt.date, end: dt.date, col: str = "ds",
                       writes: dict[str, int] | None = None, name: str | None = None) -> int:
    """Write ``df`` as exactly the ``col`` partitions in [start, end]: rows outside are refused, rows of
    those partitions written before are replaced, every other partition is left alone. Returns the version."""
    pred = ds_predicate(start, end, col)

    def _write():
        (df.write.format("delta").mode("overwrite").partitionBy(col)
         .option("replaceWhere", pred).option("mergeSchema", "false").save(path))
    with_conflict_retry(_write)
    spark = df.sparkSession
    version = latest_version(spark, path)
    if writes is not None:
        writes[name or path] = version
    return version


def overwrite_table(df, path: str, writes: dict[str, int] | None = None, name: str | None = None) -> int:
    """Replace a whole (small, unpartitioned) table, e.g. a dimension snapshot."""
    with_conflict_retry(lambda: df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path))
    version = latest_version(df.sparkSession, path)
    if writes is not None:
        writes[name or path] = version
    return version
