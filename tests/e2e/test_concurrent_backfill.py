"""Two backfill dates processed at the same time by separate processes against the same Delta tables:
both complete, nothing is lost, and the ledger holds one row per (ds, source)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

from jobs import synth
from tests.conftest import REPO, write_conf

DAYS = ("2026-10-01", "2026-10-02")


def test_two_dates_concurrently(tmp_path, spark):
    conf = write_conf(tmp_path, master="local[1]")
    synth.generate(synth.SynthConfig(start=dt.date(2026, 10, 1), days=2, rows_per_day=800, seed=3), tmp_path / "landing" / "cards")
    procs = [subprocess.Popen([sys.executable, "-m", "jobs.etl", "--ds", ds, "--conf", str(conf)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for ds in DAYS]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    lake = tmp_path / "lake" / "cards"
    ledger = spark.read.format("delta").load(str(lake / "etl_ledger")).collect()
    assert sorted((str(r["ds"]), r["source"]) for r in ledger) == sorted(
        (d, s) for d in DAYS for s in ("transactions", "chargebacks") if not (d == "2026-10-01" and s == "chargebacks"))
    silver = spark.read.format("delta").load(str(lake / "staged_transactions"))
    by_ds = {str(r["ds"]): r["count"] for r in silver.groupBy("ds").count().collect()}
    expected = {str(r["ds"]): r["rows_silver"] for r in ledger if r["source"] == "transactions"}
    assert by_ds == expected and set(by_ds) == set(DAYS)
    assert all(r["balanced"] for r in ledger)
