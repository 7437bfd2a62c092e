"""ETL: landing files -> bronze (raw rows + ingest metadata) -> staged silver rows (typed, standardised,
deduplicated against each other and against what silver already holds) + quarantine (every rejected row with
a reason code and the rule), per source of the dataset spec, for the ds partitions [--start-ds, --ds].

Write-audit-publish: this step writes ``staged_<source>``, never ``silver_<source>``; ``validate`` runs Great
Expectations on the staged rows and only then publishes them to silver. Each table's partitions are
replaced, never appended; counts reconcile (rows read = staged + quarantined + duplicates dropped) and land in
the etl_ledger table.

One row per key across days: per key, the latest event time wins; on equal event times the earlier landing
day, then the larger row hash (so the outcome never depends on the order days are processed in). The run's
winners are compared with the rows silver already holds for other days (a join of narrow key frames); one
that loses is a duplicate, one that wins is staged with ``_supersedes_ds`` naming the older row's day, and
publishing removes that row from silver. The comparison reaches back ``dedup_lookback_days`` (source spec;
default: the whole of silver)."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import partial

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.config import Column, LabelSpec, Source
from jobs.common.errors import DataError
from jobs.common.landing import (LandedFile, check_columns, check_complete, check_parquet_types, csv_header, json_keys,
                                 list_source_files, parquet_schema)
from jobs.common.spark import concurrently
from jobs.common.sqlexpr import rebind

SCHEMA_VERSION = 1
META = ["_source_file", "_file_mtime", "_ingest_run_id", "_schema_version", "_row_hash"]
CORRUPT = "_corrupt_record"
SPARK_TYPES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "boolean": "boolean",
               "date": "date", "timestamp": "timestamp"}


# ---------------------------------------------------------------- read (shell)
def read_landing(spark, files: list[LandedFile], source: Source) -> DataFrame:
    """Raw rows as strings, one column per declared column, plus _source_file/_file_mtime/ds."""
    if source.format == "csv":
        by_header: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for f in files:
            header = csv_header(f.uri, source.options.get("sep", ","))
            check_columns(header, source, f.uri)
            check_complete(f.uri)
            by_header[tuple(header)].append(f.uri)
        frames = []
        for header, uris in sorted(by_header.items()):
            schema = T.StructType([T.StructField(c, T.StringType()) for c in header]
                                  + [T.StructField(CORRUPT, T.StringType())])
            reader = (spark.read.schema(schema).option("header", "true").option("mode", "PERMISSIVE")
                      .option("columnNameOfCorruptRecord", CORRUPT).option("encoding", "UTF-8"))
            for k, v in source.options.items():
                reader = reader.option(k, v)
            frames.append(reader.csv(uris))
        df = frames[0]
        for other in frames[1:]:
            df = df.unionByName(other)
    elif source.format == "json":
        for f in files:
            check_columns(json_keys(f.uri), source, f.uri)
            check_complete(f.uri)
        schema = T.StructType([T.StructField(c, T.StringType()) for c in source.column_names]
                              + [T.StructField(CORRUPT, T.StringType())])
        df = (spark.read.schema(schema).option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
              .json([f.uri for f in files]))
    elif source.format == "parquet":
        by_file = {f.uri: parquet_schema(f.uri) for f in files}  # a corrupt file fails here, by name
        for uri, schema in by_file.items():
            check_columns(list(schema), source, uri)
            check_parquet_types(schema, source, uri)
        typed = next(iter(by_file.values()))
        df = spark.read.parquet(*by_file)
        df = df.select(*[_parquet_as_string(c, typed[c.name]) for c in source.columns],
                       F.lit(None).cast("string").alias(CORRUPT))
    else:
        raise DataError(f"source '{source.name}': unsupported landing format '{source.format}'")
    return (df.withColumn("_source_file", F.col("_metadata.file_path"))
              .withColumn("_file_mtime", F.col("_metadata.file_modification_time"))
              .withColumn("ds", F.to_date(F.regexp_extract("_source_file", r"ds=(\d{4}-\d{2}-\d{2})", 1))))


def _parquet_as_string(c: Column, arrow_type: str) -> SparkColumn:
    """Raw value as text; a typed timestamp is written in the declared format so it parses back exactly.
    Nanosecond timestamps (pandas' default) arrive as longs (spark.sql.legacy.parquet.nanosAsLong)."""
    col = F.col(c.name)
    if arrow_type.startswith("timestamp[ns"):
        col = F.timestamp_micros(F.floor(col / 1000))
    if arrow_type.startswith("timestamp") and c.format:
        return F.date_format(col, c.format).alias(c.name)
    return col.cast("string").alias(c.name)


# ---------------------------------------------------------------- pure transforms
def to_bronze(raw: DataFrame, source: Source, run_id: str) -> DataFrame:
    """Raw strings kept as landed, plus ingest metadata and a content hash of the raw row."""
    cols = source.column_names
    return (raw.withColumn("_ingest_run_id", F.lit(run_id))
               .withColumn("_schema_version", F.lit(SCHEMA_VERSION))
               # 64-bit content hash of the raw row: row identity across reruns and the dedup tie-break
               .withColumn("_row_hash", F.xxhash64(*[F.coalesce(F.col(c), F.lit("\u0000")) for c in cols]))
               .select(*cols, CORRUPT, *META, "ds"))


def _parse(c: Column) -> SparkColumn:
    raw = F.col(c.name)
    if c.type == "timestamp":
        return F.expr(f"try_to_timestamp(`{c.name}`, '{c.format}')") if c.format else F.expr(f"try_cast(`{c.name}` as timestamp)")
    if c.type == "date":
        return F.expr(f"try_to_date(`{c.name}`, '{c.format}')") if c.format else F.expr(f"try_cast(`{c.name}` as date)")
    if c.type == "string":
        return raw
    return F.expr(f"try_cast(`{c.name}` as {SPARK_TYPES[c.type]})")


def rejection(source: Source, label: LabelSpec | None = None) -> SparkColumn:
    """The first rule a row breaks, as struct(reason, rule), or null for a good row. Expects the standardised
    raw columns and their parsed values in ``<col>__v``. ``label``: the inline label of the examples source,
    whose rows without a label value (the expression, or the column, is null) are quarantined as
    ``null_label``, and a multiclass label outside its classes as ``unknown_label``."""
    checks: list[tuple[SparkColumn, str, str]] = [(F.col(CORRUPT).isNotNull(), "malformed_row", "row must have every declared field")]
    for c in source.columns:
        raw, val = F.col(c.name), F.col(f"{c.name}__v")
        checks.append((raw.contains("\ufffd"), f"invalid_encoding_{c.name}", f"{c.name} is valid UTF-8 text"))
        if not c.nullable:
            checks.append((raw.isNull(), f"null_{c.name}", f"{c.name} is not null"))
        checks.append((raw.isNotNull() & val.isNull(), f"unparseable_{c.name}",
                       f"{c.name} parses as {c.type}" + (f" with format {c.format}" if c.format else "")))
        if c.min is not None:
            checks.append((val < F.lit(c.min), f"below_min_{c.name}", f"{c.name} >= {c.min}"))
        if c.max is not None:
            checks.append((val > F.lit(c.max), f"above_max_{c.name}", f"{c.name} <= {c.max}"))
        if c.values:
            checks.append((val.isNotNull() & ~val.isin(*c.values), f"unknown_value_{c.name}", f"{c.name} in {list(c.values)}"))
    if label is not None and label.inline_column:
        value = F.col(f"{label.column}__v") if label.column else F.expr(rebind(label.expr, {c: f"{c}__v" for c in source.column_names}))
        checks.append((value.isNull(), "null_label", f"label {label.name} = {label.column or label.expr} is not null"))
        if label.classes:
            checks.append((~value.cast("string").isin(*label.classes), "unknown_label",
                           f"label {label.name} = {label.column or label.expr} in {list(label.classes)}"))
    ts = F.col(f"{source.event_time}__v")
    checks.append((ts >= F.date_add(F.col("ds"), 1).cast("timestamp"), "future_event",
                   f"{source.event_time} < end of its landing day (ds + 1 day)"))
    out = F.lit(None).cast("struct<reason:string,rule:string>")
    for cond, reason, rule in reversed(checks):
        out = F.when(cond, F.struct(F.lit(reason).alias("reason"), F.lit(rule).alias("rule"))).otherwise(out)
    return out


def standardise(bronze: DataFrame, source: Source, label: LabelSpec | None = None) -> DataFrame:
    """Trim strings, turn empty strings into nulls, parse each column into ``<col>__v``, find the rejection
    (``label``: the examples source's inline label, see ``rejection``)."""
    df = bronze
    for c in source.columns:
        df = df.withColumn(c.name, F.nullif(F.trim(F.col(c.name)), F.lit("")))
    for c in source.columns:
        df = df.withColumn(f"{c.name}__v", _parse(c))
    return df.withColumn("_rejection", rejection(source, label))


SUPERSEDES = "_supersedes_ds"


def published_keys(silver: DataFrame, source: Source) -> DataFrame:
    """What the cross-day deduplication needs of rows silver already holds (other days than the run's):
    key, event time, landing day and row hash (narrow: a column-pruned read)."""
    return silver.select(F.col(source.key).alias("_k"), F.col(source.event_time).alias("_pt"), F.col("ds").alias("_pd"),
                         F.col("_row_hash").alias("_ph"))


def judge(std: DataFrame, source: Source) -> DataFrame:
    """Every standardised row with its ``_outcome``: 'quarantined' (it breaks a rule), 'silver' (the row kept
    for its key) or 'duplicate'. Deduplication rule: per key, the latest event time wins; equal event times
    keep the earlier landing day, then the largest row hash, so the choice never depends on file or run
    order. One shuffle, by key."""
    ok = F.col("_rejection").isNull()
    w = (Window.partitionBy(ok, F.col(f"{source.key}__v"))
         .orderBy(F.col(f"{source.event_time}__v").desc(), F.col("ds").asc(), F.col("_row_hash").desc()))
    return (std.withColumn("_rank", F.row_number().over(w))
               .withColumn("_outcome", F.when(~ok, "quarantined").when(F.col("_rank") == 1, "silver").otherwise("duplicate")))


def collisions(judged: DataFrame, published: DataFrame, source: Source) -> DataFrame:
    """The run's winning rows whose key silver already holds on another day, with the verdict of the same
    rule (``_published_wins``) and that row's day (``_pd``). A join of two narrow frames; the result is as
    small as the keys that landed again."""
    winners = judged.where(F.col("_outcome") == "silver").select(
        F.col(f"{source.key}__v").alias("_k"), F.col(f"{source.event_time}__v").alias("_t"), "ds", "_row_hash")
    t, pt = F.col("_t"), F.col("_pt")
    published_wins = (pt > t) | ((pt == t) & ((F.col("_pd") < F.col("ds")) | ((F.col("_pd") == F.col("ds")) & (F.col("_ph") > F.col("_row_hash")))))
    return (winners.join(published, "_k").groupBy("_k")  # one row per key (silver holds one row per key)
            .agg(F.max(published_wins).alias("_published_wins"), F.min("_pd").alias("_pd")))


def against_published(judged: DataFrame, clashes: DataFrame | None, source: Source) -> DataFrame:
    """Apply ``collisions``: a winner that loses to a published row becomes a duplicate
    (``_dup_of_published``); one that beats it carries that row's day in ``_supersedes_ds``. A broadcast
    join: the judged rows are not shuffled again."""
    if clashes is None:
        return judged.withColumn("_dup_of_published", F.lit(False)).withColumn(SUPERSEDES, F.lit(None).cast("date"))
    out = judged.join(F.broadcast(clashes), (F.col(f"{source.key}__v") == F.col("_k")) & (F.col("_outcome") == "silver"), "left")
    lost = F.coalesce(F.col("_published_wins"), F.lit(False))
    return (out.withColumn("_dup_of_published", lost)
               .withColumn(SUPERSEDES, F.when(F.col("_k").isNotNull() & ~lost, F.col("_pd")))
               .withColumn("_outcome", F.when(lost, "duplicate").otherwise(F.col("_outcome")))
               .drop("_k", "_published_wins", "_pd"))


def silver_rows(judged: DataFrame, source: Source) -> DataFrame:
    """The rows to stage for silver, with ``_supersedes_ds`` (the day of the published row each replaces)."""
    typed = [F.col(f"{c.name}__v").alias(c.name) for c in source.columns]
    return judged.where(F.col("_outcome") == "silver").select(*typed, "_source_file", "_ingest_run_id", "_row_hash", SUPERSEDES, "ds")


def quarantine_rows(judged: DataFrame, source: Source) -> DataFrame:
    return (judged.where(F.col("_outcome") == "quarantined")
            .select(*source.column_names, CORRUPT, F.col("_rejection.reason").alias("reason"),
                    F.col("_rejection.rule").alias("rule"), *META, "ds"))


def enrich(silver: DataFrame, dims: list[tuple[DataFrame, str]]) -> DataFrame:
    """Left-join small dimension snapshots by key (broadcast): a missing dimension row leaves nulls."""
    for dim, key in dims:
        silver = silver.join(F.broadcast(dim.dropDuplicates([key])), on=key, how="left")
    return silver


def ledger_rows(judged: DataFrame, source: Source) -> list[dict]:
    """One ledger row per ds from one aggregation: rows read, staged for silver, quarantined (by reason),
    duplicates dropped (of which duplicates of rows silver already holds from other days), and published
    rows of other days this day's rows supersede. ``balanced`` starts true; ``reconcile`` checks it."""
    counts = (judged.groupBy("ds", "_outcome", F.col("_rejection.reason").alias("reason"))
              .agg(F.count(F.lit(1)).alias("count"),
                   F.count(F.when(F.col("_dup_of_published"), 1)).alias("across"),  # such a row is always a duplicate
                   F.count(SUPERSEDES).alias("superseded"))
              .collect())
    per: dict = defaultdict(lambda: {"silver": 0, "duplicate": 0, "across": 0, "superseded": 0, "reasons": {}})
    for r in counts:
        d = per[r["ds"]]
        d["across"] += r["across"]
        d["superseded"] += r["superseded"]
        if r["_outcome"] == "quarantined":
            d["reasons"][r["reason"]] = d["reasons"].get(r["reason"], 0) + r["count"]
        else:
            d[r["_outcome"]] += r["count"]
    rows = []
    for ds, d in sorted(per.items()):
        q = sum(d["reasons"].values())
        read = d["silver"] + d["duplicate"] + q
        rows.append({"ds": ds, "source": source.name, "rows_read": read, "rows_silver": d["silver"], "rows_quarantined": q,
                     "duplicates_dropped": d["duplicate"], "duplicates_of_published": d["across"],
                     "rows_superseded": d["superseded"], "quarantined_by_reason": dict(sorted(d["reasons"].items())),
                     "balanced": True})
    return rows


def reconcile(ledger: list[dict], written: dict[str, int | None], source: Source) -> list[dict]:
    """Check the ledger against what the Delta commits say they wrote: bronze rows = rows read, staged rows
    = rows for silver, quarantine rows = rows quarantined. A mismatch marks every row unbalanced."""
    expected = {"bronze": sum(r["rows_read"] for r in ledger), "staged": sum(r["rows_silver"] for r in ledger),
                "quarantine": sum(r["rows_quarantined"] for r in ledger)}
    ok = all(written.get(k) is None or written[k] == v for k, v in expected.items())
    return [{**r, "balanced": r["balanced"] and ok,
             **({} if ok else {"mismatch": {k: (expected[k], written.get(k)) for k in expected}})} for r in ledger]


# ---------------------------------------------------------------- shell
def _read_dimension(spark, ctx: StepContext, e) -> DataFrame:
    uri = f"{ctx.settings.landing.rstrip('/')}/{e.path}"
    df = spark.read.option("header", "true").csv(uri)
    missing = [c for c in [e.key, *e.columns] if c not in df.columns]
    if missing:
        raise DataError(f"{uri}: dimension file lacks column(s) {missing}; expected {[e.key, *e.columns]}")
    return df.select(F.trim(e.key).alias(e.key), *[F.trim(c).cast(SPARK_TYPES[t]).alias(c) for c, t in e.columns.items()])


def ledger_frame(spark, rows: list[dict], run_id: str) -> DataFrame:
    schema = ("ds date, source string, rows_read long, rows_silver long, rows_quarantined long, "
              "duplicates_dropped long, quarantined_by_reason map<string,long>, balanced boolean, run_id string, "
              "duplicates_of_published long, rows_superseded long")
    return spark.createDataFrame([{**r, "run_id": run_id} for r in rows], schema)


def published_outside(spark, ctx: StepContext, source: Source) -> DataFrame | None:
    """``published_keys`` of the rows silver holds for other days than the run's (within the source's
    ``dedup_lookback_days`` before the run, if set), from the version this run reads (recorded)."""
    name = f"silver_{source.name}"
    if not delta_io.is_delta(spark, ctx.table(name)):
        return None
    silver = delta_io.read_pinned(spark, ctx.table(name), ctx.reads, name)
    outside = f"NOT ({delta_io.ds_predicate(ctx.start_ds, ctx.ds)})"
    if source.dedup_lookback_days is not None:
        outside += f" AND ds >= DATE'{(ctx.start_ds - dt.timedelta(days=source.dedup_lookback_days)).isoformat()}'"
    return published_keys(silver.where(outside), source)


def process_source(spark, ctx: StepContext, source: Source) -> list[dict]:
    """landing -> bronze -> (quarantine, staged silver rows) for one source over [start_ds, ds]; returns the
    ledger. Bronze is written first and read back from its commit; quarantine, the staged rows and the
    ledger all come from one judged, materialised frame."""
    files = list_source_files(ctx.settings.landing, source, ctx.start_ds, ctx.ds)
    name = source.name
    if not files:
        return []
    raw = read_landing(spark, files, source)
    written: dict[str, int | None] = {}

    def write(df: DataFrame, table: str) -> None:
        written[table] = delta_io.replace_partitions(df, ctx.table(f"{table}_{name}"), ctx.start_ds, ctx.ds,
                                                     writes=ctx.writes, name=f"{table}_{name}").rows

    write(to_bronze(raw, source, ctx.run_id), "bronze")
    # the rest reads the bronze partitions just committed (columnar, pinned), not the CSV a second time
    bronze = (delta_io.read_pinned(spark, ctx.table(f"bronze_{name}"), None, None, version=ctx.writes[f"bronze_{name}"])
              .where(delta_io.ds_predicate(ctx.start_ds, ctx.ds)))
    # Materialised once for the ledger, quarantine and staged writes, as a local checkpoint rather than a
    # cache: the rows are kept as they are instead of being encoded into compressed column batches (4M
    # rows/day: about half the time, bench/RESULTS.md). Not replicated: a lost executor fails the step,
    # and a rerun repeats it (every write replaces its partitions).
    spec = ctx.dataset
    label = spec.label if source.name == spec.examples and spec.label.inline_column else None
    if label is not None:  # a bad label expression fails here, naming the spec file and key, before any row is judged
        from jobs.features import inline_label
        inline_label(spec, spark.createDataFrame([], ", ".join(f"`{c.name}` {SPARK_TYPES[c.type]}" for c in source.columns)))
    within = judge(standardise(bronze, source, label), source).localCheckpoint(eager=True)
    published = published_outside(spark, ctx, source)
    # likewise: each write applies it, and would otherwise re-read silver's keys and redo the join
    clashes = collisions(within, published, source).localCheckpoint(eager=True) if published is not None else None
    judged = against_published(within, clashes, source)
    ledger = ledger_rows(judged, source)
    quarantine, too_many = quarantine_rows(judged, source), quarantine_rate_error(ledger, source)
    if too_many:  # the rejected rows are left in quarantine to inspect; nothing is staged
        write(quarantine, "quarantine")
        raise DataError(too_many)
    dims = [(_read_dimension(spark, ctx, e), e.key) for e in source.enrich]
    concurrently(partial(write, quarantine, "quarantine"),  # independent tables: side by side
                 partial(write, enrich(silver_rows(judged, source), dims), "staged"))  # validate audits, then publishes
    ledger = reconcile(ledger, written, source)
    unbalanced = [r for r in ledger if not r["balanced"]]
    if unbalanced:
        raise DataError(f"source '{name}': counts do not reconcile with what was written: {unbalanced[0].get('mismatch')}")
    return ledger


def quarantine_rate_error(ledger: list[dict], source: Source) -> str | None:
    """Why the ledger's quarantined share is above the source's ``max_quarantine_rate`` on a day, or None."""
    for r in ledger:
        rate = r["rows_quarantined"] / max(r["rows_read"], 1)
        if rate > source.max_quarantine_rate:
            return (f"source '{source.name}' ds={r['ds']}: {r['rows_quarantined']} of {r['rows_read']} rows "
                    f"quarantined ({rate:.1%} > max_quarantine_rate {source.max_quarantine_rate:.1%}); "
                    f"by reason: {r['quarantined_by_reason']}")
    return None


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    spark = get_spark(ctx.settings, "etl")
    ledger: list[dict] = []
    sources = list(ctx.dataset.sources.values())
    # the sources are independent (each its own tables; dimensions come from the landing zone): side by side
    per_source = concurrently(*[partial(process_source, spark, ctx, source) for source in sources])
    for source, rows in zip(sources, per_source):
        ledger += rows
        ctx.counts[source.name] = {
            "rows_read": sum(r["rows_read"] for r in rows), "rows_silver": sum(r["rows_silver"] for r in rows),
            "rows_quarantined": sum(r["rows_quarantined"] for r in rows),
            "duplicates_dropped": sum(r["duplicates_dropped"] for r in rows),
            "duplicates_of_published": sum(r["duplicates_of_published"] for r in rows),
            "rows_superseded": sum(r["rows_superseded"] for r in rows)}
        print(f"etl {ctx.dataset.name}.{source.name} {ctx.start_ds}..{ctx.ds}: {ctx.counts[source.name]}")
    totals = {k: sum(c[k] for c in ctx.counts.values()) for k in ("rows_read", "rows_silver", "rows_quarantined", "duplicates_dropped")}
    ctx.rows = totals["rows_read"]
    ctx.figure = (f"{totals['rows_silver']:,} staged for silver, {totals['rows_quarantined']:,} quarantined, "
                  f"{totals['duplicates_dropped']:,} duplicates dropped")
    if ledger:
        delta_io.replace_partitions(ledger_frame(spark, ledger, ctx.run_id), ctx.table("etl_ledger"), ctx.start_ds,
                                    ctx.ds, writes=ctx.writes, name="etl_ledger", evolve=True)


def main(argv: list[str] | None = None) -> None:
    from jobs.validate import day_published
    run_step("etl", run, argv, __doc__, done=day_published)


if __name__ == "__main__":
    main()
