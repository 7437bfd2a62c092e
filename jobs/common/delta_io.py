"""Delta reads pinned to a version, partition-replacing writes, and a retry on write conflicts."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
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


def log_figures(path: str) -> tuple[int, int | None] | None:
    """(version, rows) of a local Delta table read from its transaction log alone, without Spark (the run's
    summary and ``make status`` show them): the latest commit, and the sum of its live files' ``numRecords``
    statistics less their deletion vectors' rows. Rows are None where the log does not tell (a file written
    without statistics, a V2 checkpoint); None when ``path`` holds no Delta table."""
    import json
    import os
    log = os.path.join(path, "_delta_log")
    commits = sorted(int(n[:20]) for n in os.listdir(log) if n.endswith(".json") and n[:20].isdigit()) \
        if os.path.isdir(log) else []
    if not commits:
        return None
    live: dict[tuple, dict] = {}  # a live file is its path and its deletion vector (a delete re-adds the path with one)

    def key(action: dict) -> tuple:
        dv = action.get("deletionVector") or {}
        return action["path"], dv.get("storageType"), dv.get("pathOrInlineDv"), dv.get("offset")
    start = 0
    if os.path.exists(os.path.join(log, "_last_checkpoint")):
        with open(os.path.join(log, "_last_checkpoint")) as f:
            cp = json.load(f)
        parts = cp.get("parts")
        names = ([f"{cp['version']:020d}.checkpoint.{i:010d}.{parts:010d}.parquet" for i in range(1, parts + 1)] if parts
                 else [f"{cp['version']:020d}.checkpoint.parquet"])
        if cp.get("v2Checkpoint") or not all(os.path.exists(os.path.join(log, n)) for n in names):
            return commits[-1], None
        import pyarrow.parquet as pq
        for n in names:
            for add in pq.read_table(os.path.join(log, n), columns=["add"]).column("add").to_pylist():
                if add:
                    live[key(add)] = add
        start = cp["version"] + 1
    for v in (c for c in commits if c >= start):
        with open(os.path.join(log, f"{v:020d}.json")) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    live[key(action["add"])] = action["add"]
                elif "remove" in action:
                    live.pop(key(action["remove"]), None)
    rows = 0
    for add in live.values():
        if not add.get("stats") or "numRecords" not in add["stats"]:
            return commits[-1], None
        rows += json.loads(add["stats"])["numRecords"] - ((add.get("deletionVector") or {}).get("cardinality") or 0)
    return commits[-1], rows


def read_pinned(spark, path: str, reads: dict[str, int] | None = None, name: str | None = None,
                version: int | None = None):
    """Read the table at its current version (or ``version``) and record that version (lineage): the step
    then sees one consistent snapshot even if a concurrent writer commits while it runs."""
    version = latest_version(spark, path) if version is None else version
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


@dataclass(frozen=True)
class Commit:
    version: int
    rows: int | None  # rows this write committed (0: it committed nothing; None: Delta did not say)


def _committed(spark, path: str, tag: str) -> Commit:
    """Version and row count of the write tagged ``tag``, from one read of the table's latest commit."""
    from delta.tables import DeltaTable
    h = DeltaTable.forPath(spark, path).history(1).collect()[0]
    metrics = h["operationMetrics"] or {}
    if h["userMetadata"] != tag:  # the write made no commit (nothing to replace, nothing to add)
        return Commit(int(h["version"]), 0)
    return Commit(int(h["version"]), int(metrics["numOutputRows"]) if "numOutputRows" in metrics else None)


def _tagged_write(df, path: str, mode_options: dict[str, str], partition_col: str | None) -> Commit:
    tag = f"trainyard:{uuid.uuid4().hex}"

    def _write():
        w = df.write.format("delta").mode("overwrite").option("userMetadata", tag)
        for k, v in mode_options.items():
            w = w.option(k, v)
        if partition_col:
            w = w.partitionBy(partition_col)
        w.save(path)
    with_conflict_retry(_write)
    return _committed(df.sparkSession, path, tag)


def replace_partitions(df, path: str, start: dt.date, end: dt.date, col: str = "ds",
                       writes: dict[str, int] | None = None, name: str | None = None, evolve: bool = False) -> Commit:
    """Write ``df`` as exactly the ``col`` partitions in [start, end]: rows outside are refused, rows of
    those partitions written before are replaced, every other partition is left alone. ``evolve`` lets a
    derived table gain columns (a new feature); source tables keep their schema strictly."""
    opts = {"replaceWhere": ds_predicate(start, end, col), "mergeSchema": str(evolve).lower()}
    commit = _tagged_write(df, path, opts, col)
    if writes is not None:
        writes[name or path] = commit.version
    return commit


def overwrite_table(df, path: str, writes: dict[str, int] | None = None, name: str | None = None) -> Commit:
    """Replace a whole (small, unpartitioned) table, e.g. a pinned snapshot."""
    commit = _tagged_write(df, path, {"overwriteSchema": "true"}, None)
    if writes is not None:
        writes[name or path] = commit.version
    return commit
