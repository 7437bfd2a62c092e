"""Benchmark: monitoring one day of features against the model's reference profile, as ``jobs.monitor`` does
it (``drift.bin_counts`` of every feature on the reference's bins in one pass, then PSI,
Jensen-Shannon / Wasserstein and null rates per feature on the driver), against reading the same rows once
with Spark.

Data: ``bench_train.make_data``'s rows (N x F float features; the last ``--categorical`` of them turned into
integer codes 0-11, as the features step encodes a vocabulary), written as one ``ds`` partition of a Delta
table, like the ``features`` table scoring writes. The reference profile is ``drift.profile`` of the first
1M rows (what train publishes with a model; not timed).

Each run is a fresh process; the kinds alternate, ``--repeat`` times each (this machine's speed drifts):

- **read**: timed: the day's partition read from Delta, every feature column, written to Spark's ``noop`` sink;
- **monitor**: timed: the same partition read and binned on the reference's bins, the distances computed,
  the day's signals derived (``monitor.drift_rows``, ``monitor.day_signals``).

Target (issue 23): monitor <= 1.5x read.

    .venv/bin/python bench/bench_monitor.py --rows 4000000 --features 30 --repeat 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DS = dt.date(2026, 11, 1)


def spark_session():
    from jobs.common.config import Settings
    from jobs.common.spark import get_spark
    settings = Settings(spark_master="local[*]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",), landing="",
                        lake="", runs="", gx="", registry="",
                        spark_conf={"spark.driver.memory": "6g", "spark.ui.enabled": "false",
                                    "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "8"})
    return get_spark(settings, "bench-monitor")


def columns(n_features: int, categorical: int) -> tuple[list[str], list[str]]:
    from bench_train import feature_names
    names = feature_names(n_features)
    return names[: n_features - categorical], names[n_features - categorical:]


def prepare(root: Path, rows: int, n_features: int, categorical: int) -> None:
    from pyspark.sql import functions as F

    from bench_train import make_data
    from jobs.drift import profile
    make_data(root / "raw", rows, n_features)
    spark = spark_session()
    numeric, cats = columns(n_features, categorical)
    df = spark.read.parquet(str(root / "raw" / "train")).select(
        "id", *numeric, *[F.least(F.greatest(F.floor(F.col(c) * 3 + 6), F.lit(0)), F.lit(11)).cast("int").alias(c) for c in cats])
    (df.withColumn("ds", F.lit(DS)).write.format("delta").mode("overwrite").partitionBy("ds")
       .save(str(root / "features")))
    ref = profile(spark.read.format("delta").load(str(root / "features")).limit(1_000_000), numeric, cats)
    (root / "profile.json").write_text(json.dumps(ref))


def day(spark, root: Path, n_features: int, categorical: int):
    from jobs.common import delta_io
    numeric, cats = columns(n_features, categorical)
    return (spark.read.format("delta").load(str(root / "features")).where(delta_io.ds_predicate(DS, DS))
            .select(*numeric, *cats))


def run_read(root: Path, n_features: int, categorical: int) -> dict:
    spark = spark_session()
    spark.range(1).count()
    t0 = time.perf_counter()
    day(spark, root, n_features, categorical).write.format("noop").mode("overwrite").save()
    return {"seconds": time.perf_counter() - t0}


def run_monitor(root: Path, n_features: int, categorical: int) -> dict:
    from jobs.drift import bin_counts, local_files
    from jobs.monitor import bins, day_signals, drift_rows
    spark = spark_session()
    spark.range(1).count()
    reference = json.loads((root / "profile.json").read_text())
    t0 = time.perf_counter()
    frame = day(spark, root, n_features, categorical)
    counts = bin_counts(frame, bins(reference), local_files(spark, frame, str(root / "features")))
    rows = drift_rows(reference, counts, {})
    signals = day_signals(rows, {})
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": next(iter(counts.values()))["rows"], "figures": len(rows),
            "drifted": signals["data_drift"]["detail"]}


KINDS = {"read": run_read, "monitor": run_monitor}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--categorical", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", default=None)
    p.add_argument("--one", choices=list(KINDS), help=argparse.SUPPRESS)
    p.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one or a.prepare:
        root = Path(a.data)
        if a.prepare:
            prepare(root, a.rows, a.features, a.categorical)
            res = {"rows": a.rows}
        else:
            res = KINDS[a.one](root, a.features, a.categorical)
        print(json.dumps(res), flush=True)
        return
    root = Path(a.work or tempfile.mkdtemp(prefix="trainyard-bench-monitor-")) / f"rows{a.rows}x{a.features}"
    if not (root / "profile.json").exists():
        _child("--prepare", "--rows", str(a.rows), "--features", str(a.features), "--categorical", str(a.categorical),
               "--data", str(root))
    runs = {k: [] for k in KINDS}
    for i in range(a.repeat):  # alternate: this machine's capacity drifts over minutes
        for kind in KINDS:
            r = _child("--one", kind, "--features", str(a.features), "--categorical", str(a.categorical), "--data", str(root))
            runs[kind].append(r["seconds"])
            print(json.dumps({"run": i, "kind": kind, **r}), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({"rows": a.rows, "features": a.features, "categorical": a.categorical, "cores": os.cpu_count(),
                      "median_s": {k: round(v, 2) for k, v in med.items()},
                      "monitor_vs_read": round(med["monitor"] / med["read"], 3),
                      "runs_s": {k: [round(x, 2) for x in v] for k, v in runs.items()}}), flush=True)


if __name__ == "__main__":
    main()
