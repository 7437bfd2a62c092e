"""Benchmark: the cost of write-audit-publish and cross-day deduplication on the ETL of one landing day.

Two days of synthetic card transactions (``jobs.synth``, seed 1); day 1 is loaded first, then day 2's ETL is
timed, alternately and ``--repeat`` times each, with
  - old: the ETL of a baseline commit (``--baseline``, checked out with ``git worktree``): landing -> bronze ->
         silver directly, deduplicated within the day only;
  - new: this tree's ETL (landing -> bronze -> staged, deduplicated against silver's other days) followed by
         the publish that ``validate`` does once GX passed (staged -> silver, superseded rows removed).
GX itself is the same in both and not timed here (bench_etl.py measures it). Each run is a fresh process
(its Spark session's start is not timed); the day-2 partitions are replaced on every run. Prints a JSON line
per run and the medians; bench/RESULTS.md records them.

    .venv/bin/python bench/bench_wap.py --rows 4000000 --repeat 3 --baseline c5c2c08
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

REPO = Path(__file__).resolve().parents[1]
D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def settings_for(root: Path):
    from jobs.common.config import Settings
    return Settings(spark_master="local[*]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",),
                    spark_conf={"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8",
                                "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                                "spark.databricks.delta.snapshotPartitions": "2",
                                "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "4"},
                    landing=str(root / "landing"), lake=str(root / f"lake-{os.environ['BENCH_VARIANT']}"),
                    runs=str(root / "runs"), gx=str(root / "gx"), registry=str(root / "registry"))


def one(root: Path, day: dt.date) -> dict:
    """In a process whose ``jobs`` is the variant's: ETL (and, where the code has it, publish) of ``day``."""
    from jobs import etl, validate
    from jobs.common.cli import StepContext
    from jobs.common.config import DatasetSpec
    from jobs.common.spark import get_spark
    spec = DatasetSpec.load("cards")
    settings = settings_for(root)
    spark = get_spark(settings, "bench-wap")
    src = spec.sources["transactions"]
    ctx = lambda step: StepContext(step=step, ds=day, start_ds=day, dataset=spec, settings=settings, params={},  # noqa: E731
                                   run_id="bench")
    t0 = time.perf_counter()
    [ledger] = etl.process_source(spark, ctx("etl"), src)
    t1 = time.perf_counter()
    published = validate.publish_source(spark, ctx("validate"), src) if hasattr(validate, "publish_source") else None
    t2 = time.perf_counter()
    silver = spark.read.format("delta").load(f"{settings.lake}/cards/silver_transactions")
    return {"etl_s": t1 - t0, "publish_s": t2 - t1, "total_s": t2 - t0, "rows_read": ledger["rows_read"],
            "rows_silver": ledger["rows_silver"], "published": published, "silver_rows": silver.count(),
            "silver_keys": silver.select("txn_id").distinct().count()}


def run_variant(variant: str, code: Path, root: Path, day: dt.date) -> dict:
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, __file__, "--one", str(root), "--day", day.isoformat()], cwd=code, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline", default="c5c2c08", help="commit of the old ETL (before write-audit-publish)")
    p.add_argument("--work", default=None)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--day", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(Path(a.one), dt.date.fromisoformat(a.day))))
        return
    sys.path.insert(0, str(REPO))
    from jobs import synth
    work = Path(a.work or tempfile.mkdtemp(prefix="trainyard-bench-wap-"))
    root = work / f"rows{a.rows}"
    if not (root / "landing" / "cards").exists():
        synth.generate(synth.SynthConfig(start=D1, days=2, rows_per_day=a.rows, seed=1), root / "landing" / "cards")
    base = work / "baseline"
    if not base.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(base), a.baseline], cwd=REPO, check=True)
    code = {"old": base, "new": REPO}
    for variant in code:  # day 1 in silver first: what day 2 is deduplicated against
        if not (root / f"lake-{variant}").exists():
            run_variant(variant, code[variant], root, D1)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for i in range(a.repeat):  # alternate: the machine's capacity drifts over minutes
        for variant in ("old", "new") if i % 2 == 0 else ("new", "old"):
            r = run_variant(variant, code[variant], root, D2)
            runs[variant].append(r)
            print(json.dumps({"run": i, "variant": variant, **r}), flush=True)
    med = {v: {k: round(statistics.median(r[k] for r in rs), 2) for k in ("etl_s", "publish_s", "total_s")} for v, rs in runs.items()}
    print(json.dumps({"machine": f"{os.cpu_count()} cores", "rows_per_day": a.rows, "medians": med,
                      "new_over_old_total": round(med["new"]["total_s"] / med["old"]["total_s"], 3),
                      "new_etl_over_old": round(med["new"]["etl_s"] / med["old"]["total_s"], 3)}, indent=1))


if __name__ == "__main__":
    main()
