"""Benchmark: point-in-time feature building (``jobs.features.compute_features`` + the Delta write of the
feature table) on the cards dataset at N events/day, for one day with one day of history before it.

For each size it generates two landing days with ``jobs.synth`` (seed fixed), loads them to silver with
``jobs.etl`` (not timed), then times ``--repeat`` runs of features for the second day (its aggregates read the
first day as history). Prints a JSON line per run and a summary: median seconds, events/s of the target day,
and the growth factor from the smallest to the largest size next to the growth in rows (linear = equal).

    .venv/bin/python bench/bench_features.py --rows 1000000 4000000 --repeat 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import etl, features, synth, validate  # noqa: E402
from jobs.common import delta_io  # noqa: E402
from jobs.common.cli import StepContext  # noqa: E402
from jobs.common.config import DatasetSpec, Settings  # noqa: E402

D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def settings_for(root: Path) -> Settings:
    return Settings(spark_master="local[*]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",),
                    spark_conf={"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8",
                                "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                                "spark.databricks.delta.snapshotPartitions": "2",
                                        "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "4"},
                    landing=str(root / "landing"), lake=str(root / "lake"), runs=str(root / "runs"), gx=str(root / "gx"),
                    registry=str(root / "registry"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    from jobs.common.spark import get_spark
    work = Path(a.work or tempfile.mkdtemp(prefix="trainyard-bench-features-"))
    spec = DatasetSpec.load("cards")
    spark, summary = None, []
    for rows in a.rows:
        root = work / f"rows{rows}"
        settings = settings_for(root)
        spark = spark or get_spark(settings, "bench-features")
        ctx = StepContext(step="features", ds=D2, start_ds=D1, dataset=spec, settings=settings, params={}, run_id="bench")
        if not (root / "lake" / "cards" / "silver_transactions").exists():
            synth.generate(synth.SynthConfig(start=D1, days=2, rows_per_day=rows, seed=2), root / "landing" / "cards")
            etl.process_source(spark, ctx, spec.sources["transactions"])
            validate.publish_source(spark, ctx, spec.sources["transactions"])  # staged -> silver
        silver = spark.read.format("delta").load(ctx.table("silver_transactions"))
        target = silver.where(f"ds = DATE'{D2}'").count()
        times = []
        for i in range(a.repeat):
            t0 = time.perf_counter()
            events = silver.where(delta_io.ds_predicate(D1, D2))
            feats = features.compute_features(events, spec, D2, D2)
            delta_io.replace_partitions(feats, ctx.table("features"), D2, D2)
            times.append(time.perf_counter() - t0)
            print(json.dumps({"rows_per_day": rows, "run": i, "seconds": times[-1], "target_rows": target}), flush=True)
        med = statistics.median(times)
        summary.append({"rows_per_day": rows, "target_rows": target, "median_s": round(med, 2),
                        "events_per_s": round(target / med)})
    if len(summary) > 1:
        first, last = summary[0], summary[-1]
        summary.append({"time_growth": round(last["median_s"] / first["median_s"], 2),
                        "row_growth": round(last["target_rows"] / first["target_rows"], 2)})
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cores", "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
