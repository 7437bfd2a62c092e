"""Benchmark: what a pipeline step pays to start Spark, with and without the JVM class-data archive
(``make jvm``, ``jobs/common/jvm_cds.py``), and with the JVM's default tiered JIT instead of conf/local.yaml's
C1-only one.

Each run is a fresh process that does what every step does first: ``get_spark`` with conf/local.yaml's
settings (local[*], the Delta jars; the archive applied when it exists), then a first Delta round trip
(write 1,000 rows as a new Delta table, read their count back), the whole work of the shortest steps.
Timed: ``session_s`` (to a usable session), ``first_delta_s`` (the round trip, where the JVM loads and
compiles the Delta and Parquet code) and ``total_s``; peak RSS and PSS sums of the process tree as in
bench_train.py. The variants alternate, ``--repeat`` runs each; medians.

- **cold**: ``TRAINYARD_JVM_CDS=off``, the JVM loads every class from the jars.
- **archive**: the JVM maps the classes from ``state/jvm`` (built first, untimed, if absent); C1 only
  (``-XX:TieredStopAtLevel=1``, conf/local.yaml: short runs do not live long enough to pay back the C2
  compiler's work).
- **archive+tiered**: the archive with the JVM's default tiered JIT (C1, then C2 for hot code).

    .venv/bin/python bench/bench_startup.py --repeat 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_train import environment, run_sampled  # noqa: E402  (bench/ is this script's directory)

CONF = ROOT / "conf" / "local.yaml"
C1 = "-XX:TieredStopAtLevel=1"
VARIANTS = {"cold": {"TRAINYARD_JVM_CDS": "off"}, "archive": {}, "archive+tiered": {"BENCH_TIERED_JIT": "1"}}


def run_one(work: Path) -> dict:
    """In this process: start the session as a step does and make its first Delta round trip."""
    import dataclasses

    from jobs.common.config import Settings
    from jobs.common.spark import get_spark
    settings = Settings.load(CONF)
    if os.environ.get("BENCH_TIERED_JIT"):
        conf = dict(settings.spark_conf)
        conf["spark.driver.extraJavaOptions"] = conf.get("spark.driver.extraJavaOptions", "").replace(C1, "").strip()
        settings = dataclasses.replace(settings, spark_conf=conf)
    t0 = time.perf_counter()
    spark = get_spark(settings, "bench-startup")
    t1 = time.perf_counter()
    path = str(work / "t")
    spark.range(1000).withColumnRenamed("id", "n").write.format("delta").mode("overwrite").save(path)
    rows = spark.read.format("delta").load(path).count()
    t2 = time.perf_counter()
    assert rows == 1000, rows
    return {"session_s": t1 - t0, "first_delta_s": t2 - t1, "total_s": t2 - t0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(Path(a.work))), flush=True)
        return
    subprocess.run([sys.executable, "-m", "jobs.common.jvm_cds", "--conf", str(CONF)], cwd=ROOT, check=True)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for i in range(a.repeat):  # alternate: this machine's capacity drifts over minutes
        for name, env in VARIANTS.items():
            work = Path(tempfile.mkdtemp(prefix="trainyard-bench-startup-"))
            with environment(env):
                r = run_sampled([sys.executable, __file__, "--one", "--work", str(work)], work / "stderr")
            shutil.rmtree(work, ignore_errors=True)  # kept, with its stderr, when the run failed
            runs[name].append(r)
            print(json.dumps({"variant": name, "run": i, **r}), flush=True)
    keys = ("session_s", "first_delta_s", "total_s", "peak_rss_mb", "peak_pss_mb")
    medians = {name: {k: round(statistics.median(r[k] for r in rs), 2) for k in keys} for name, rs in runs.items()}
    print(json.dumps({"cores": os.cpu_count(), "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
