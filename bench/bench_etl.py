"""Benchmark: landing -> silver (etl) and GX validation on one day of card transactions, Spark vs DuckDB.

For each size (rows per day) it generates one landing day with ``jobs.synth`` (seed fixed), then runs,
alternately and ``--repeat`` times each:
  - spark:  ``jobs.etl.process_source`` for the transactions source (bronze, staged silver rows, quarantine
            Delta writes, reconciliation) and then the GX checkpoint ``jobs.validate`` runs on those staged
            rows, timed apart (publishing them to silver is measured by bench_wap.py);
            then the like-for-like landing-to-silver transformation alone (silver written once, no bronze,
            quarantine or ledger);
  - duckdb: the same landing-to-silver transformation as one DuckDB query (trim, typed parse, the same
            rejection rules, latest-event-time dedup, dimension joins) writing silver and quarantine Parquet.
Prints a JSON line per run and a summary with medians and ratios; RESULTS.md records them.

    .venv/bin/python bench/bench_etl.py --rows 1000000 4000000 --repeat 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import etl, synth, validate  # noqa: E402
from jobs.common.cli import StepContext  # noqa: E402
from jobs.common.config import DatasetSpec, Settings  # noqa: E402

DS = dt.date(2026, 10, 1)

DUCKDB_SQL = """
COPY (
WITH raw AS (
  SELECT *, filename AS _source_file FROM read_csv('{files}', header = true, all_varchar = true, filename = true)
), std AS (
  SELECT NULLIF(trim(txn_id), '') AS txn_id, NULLIF(trim(event_ts), '') AS event_ts_raw,
         NULLIF(trim(card_id), '') AS card_id, NULLIF(trim(customer_id), '') AS customer_id,
         NULLIF(trim(merchant_id), '') AS merchant_id, NULLIF(trim(amount), '') AS amount_raw,
         NULLIF(trim(currency), '') AS currency, NULLIF(trim(channel), '') AS channel, NULLIF(trim(device), '') AS device,
         _source_file
  FROM raw
), typed AS (
  SELECT *, try_strptime(event_ts_raw, '%Y-%m-%d %H:%M:%S') AS event_ts, TRY_CAST(amount_raw AS DOUBLE) AS amount FROM std
), judged AS (
  SELECT *, CASE
      WHEN txn_id IS NULL THEN 'null_txn_id'
      WHEN event_ts_raw IS NULL THEN 'null_event_ts'
      WHEN event_ts IS NULL THEN 'unparseable_event_ts'
      WHEN card_id IS NULL THEN 'null_card_id'
      WHEN customer_id IS NULL THEN 'null_customer_id'
      WHEN merchant_id IS NULL THEN 'null_merchant_id'
      WHEN amount_raw IS NULL THEN 'null_amount'
      WHEN amount IS NULL THEN 'unparseable_amount'
      WHEN amount < 0 THEN 'below_min_amount'
      WHEN amount > 100000 THEN 'above_max_amount'
      WHEN currency IS NULL THEN 'null_currency'
      WHEN channel IS NULL THEN 'null_channel'
      WHEN channel NOT IN ('chip', 'contactless', 'swipe', 'online') THEN 'unknown_value_channel'
      WHEN event_ts >= TIMESTAMP '{next_day}' THEN 'future_event'
    END AS reason,
    sha256(concat_ws(chr(1), coalesce(txn_id, chr(0)), coalesce(event_ts_raw, chr(0)), coalesce(card_id, chr(0)),
           coalesce(customer_id, chr(0)), coalesce(merchant_id, chr(0)), coalesce(amount_raw, chr(0)),
           coalesce(currency, chr(0)), coalesce(channel, chr(0)), coalesce(device, chr(0)))) AS _row_hash
  FROM typed
), ranked AS (
  SELECT *, row_number() OVER (PARTITION BY txn_id ORDER BY event_ts DESC, _row_hash DESC) AS rk
  FROM judged WHERE reason IS NULL
)
SELECT r.txn_id, r.event_ts, r.card_id, r.customer_id, r.merchant_id, r.amount, r.currency, r.channel, r.device,
       c.age_band, c.gender, c.region, m.merchant_category, m.merchant_country, r._source_file, r._row_hash,
       DATE '{ds}' AS ds
FROM ranked r
LEFT JOIN read_csv('{customers}', header = true, all_varchar = true) c USING (customer_id)
LEFT JOIN read_csv('{merchants}', header = true, all_varchar = true) m USING (merchant_id)
WHERE rk = 1
) TO '{out}/silver.parquet' (FORMAT parquet);
"""


def run_spark_transform(spark, spec, settings) -> dict:
    """The like-for-like peer of the DuckDB query: landing -> typed, judged, deduplicated, enriched silver,
    written once (Delta), without the bronze copy, the quarantine table and the ledger."""
    from jobs.common import delta_io
    from jobs.common.landing import list_source_files
    src = spec.sources["transactions"]
    ctx = StepContext(step="etl", ds=DS, start_ds=DS, dataset=spec, settings=settings, params={}, run_id="bench")
    t0 = time.perf_counter()
    raw = etl.read_landing(spark, list_source_files(settings.landing, src, DS, DS), src)
    judged = etl.judge(etl.standardise(etl.to_bronze(raw, src, "bench"), src), src)
    dims = [(etl._read_dimension(spark, ctx, e), e.key) for e in src.enrich]
    commit = delta_io.replace_partitions(etl.enrich(etl.silver_rows(judged, src), dims), ctx.table("silver_only"), DS, DS)
    return {"transform_s": time.perf_counter() - t0, "rows_silver": commit.rows}


def run_spark(spark, spec, settings, root: Path) -> dict:
    ctx = StepContext(step="etl", ds=DS, start_ds=DS, dataset=spec, settings=settings, params={}, run_id="bench")
    t0 = time.perf_counter()
    [ledger] = etl.process_source(spark, ctx, spec.sources["transactions"])
    t1 = time.perf_counter()
    vctx = StepContext(step="validate", ds=DS, start_ds=DS, dataset=spec, settings=settings, params={}, run_id="bench")
    df = spark.read.format("delta").load(ctx.table("staged_transactions")).drop(etl.SUPERSEDES)  # what validate audits
    runner = validate.GxRunner(settings.gx)
    result, batch_def = runner.validate(df, "bench_silver", validate.build_suite(spec, spec.sources["transactions"])[0], "bench")
    res = validate.summarise(result, runner.explain(df, batch_def, result))
    t2 = time.perf_counter()
    del vctx
    return {"etl_s": t1 - t0, "validate_s": t2 - t1, "rows_read": ledger["rows_read"], "rows_silver": ledger["rows_silver"],
            "gx_success": res["success"]}


def run_duckdb(root: Path, landing: Path) -> dict:
    import duckdb
    out = root / "duck"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    sql = DUCKDB_SQL.format(files=f"{landing}/cards/transactions/ds={DS}/*.csv", next_day=DS + dt.timedelta(days=1),
                            ds=DS, customers=landing / "cards" / "customers.csv", merchants=landing / "cards" / "merchants.csv",
                            out=out)
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    con.execute(sql)
    n = con.execute(f"SELECT count(*) FROM '{out}/silver.parquet'").fetchone()[0]
    t1 = time.perf_counter()
    con.close()
    return {"etl_s": t1 - t0, "rows_silver": n}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    a = p.parse_args()
    from jobs.common.spark import get_spark
    work = Path(a.work or tempfile.mkdtemp(prefix="trainyard-bench-"))
    spec = DatasetSpec.load("cards")
    summary = []
    spark = None
    for rows in a.rows:
        root = work / f"rows{rows}"
        landing = root / "landing"
        if not (landing / "cards").exists():
            synth.generate(synth.SynthConfig(start=DS, days=1, rows_per_day=rows, seed=1), landing / "cards")
        settings = Settings(spark_master="local[*]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",),
                            spark_conf={"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8",
                                        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                                        "spark.databricks.delta.snapshotPartitions": "2",
                                        "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "4"},
                            landing=str(landing), lake=str(root / "lake"), runs=str(root / "runs"), gx=str(root / "gx"),
                            registry=str(root / "registry"))
        spark = spark or get_spark(settings, "bench")
        runs = {"spark": [], "duckdb": []}
        for i in range(a.repeat):  # alternate: the machine's capacity drifts over minutes
            s = run_spark(spark, spec, settings, root)
            s.update(run_spark_transform(spark, spec, settings))
            d = run_duckdb(root, landing)
            runs["spark"].append(s)
            runs["duckdb"].append(d)
            print(json.dumps({"rows_per_day": rows, "run": i, "spark": s, "duckdb": d}), flush=True)
        med = lambda k, eng: statistics.median(r[k] for r in runs[eng])  # noqa: E731
        etl_s, val_s, duck_s = med("etl_s", "spark"), med("validate_s", "spark"), med("etl_s", "duckdb")
        tr_s = med("transform_s", "spark")
        summary.append({"rows_per_day": rows, "spark_etl_s": round(etl_s, 2), "spark_validate_s": round(val_s, 2),
                        "etl_validate_rows_per_s": round(rows / (etl_s + val_s)), "gx_share_of_etl": round(val_s / etl_s, 3),
                        "duckdb_etl_s": round(duck_s, 2), "spark_etl_over_duckdb": round(etl_s / duck_s, 2),
                        "spark_transform_s": round(tr_s, 2), "spark_transform_over_duckdb": round(tr_s / duck_s, 2),
                        "rows_silver": runs["spark"][0]["rows_silver"], "duckdb_rows_silver": runs["duckdb"][0]["rows_silver"]})
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cores", "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
