"""`airflow backfill create` over a date range, executed by a real Airflow: scheduler and API server
processes (LocalExecutor, SQLite metadata in a temporary AIRFLOW_HOME) run one train_pipeline DAG run per
day, side by side, each replacing only its own partitions. The history before the range is loaded first
with the step CLIs, as `make run` does with `start_ds`."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from jobs import synth
from tests.conftest import REPO, _free_port, write_conf

START, FROM, TO = dt.date(2026, 10, 1), dt.date(2026, 10, 19), dt.date(2026, 10, 20)
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _runs(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT logical_date, run_type, state, conf FROM dag_run WHERE dag_id = 'train_pipeline' "
                           "ORDER BY logical_date").fetchall()


def test_backfill_over_a_date_range_runs_the_whole_dag_per_day(tmp_path, spark):
    conf = write_conf(tmp_path)
    synth.generate(synth.SynthConfig(start=START, days=(TO - START).days + 1, rows_per_day=2000, seed=5),
                   tmp_path / "landing" / "cards")
    for step in ("etl", "features"):  # history up to the day before the range
        out = subprocess.run([sys.executable, "-m", f"jobs.{step}", "--ds", str(FROM - dt.timedelta(days=1)),
                              "--start-ds", str(START), "--conf", str(conf)], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]

    home = tmp_path / "airflow"
    port = _free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # backfill runs only
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__API_AUTH__JWT_SECRET": "trainyard-test-secret", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1"}
    backfill = ["backfill", "create", "--dag-id", "train_pipeline", "--from-date", str(FROM), "--to-date", str(TO),
                "--max-active-runs", "2", "--dag-run-conf", json.dumps({"dataset": "cards", "conf": str(conf)})]
    # the backfill's runs are queued before the scheduler starts: SQLite takes one writer at a time, and the
    # CLI's inserts could time out on "database is locked" while the scheduler wrote
    for cmd in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", "train_pipeline"], backfill):
        out = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, (cmd, out.stdout[-2000:] + out.stderr[-3000:])
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("api-server", "scheduler")}
    procs = [subprocess.Popen([AIRFLOW, name, *(["--port", str(port)] if name == "api-server" else [])], env=env, cwd=REPO,
                              stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True) for name in logs]
    try:
        db = home / "airflow.db"
        deadline = time.time() + 900
        while time.time() < deadline:
            runs = _runs(db)
            if len(runs) == 2 and all(r[2] in ("success", "failed") for r in runs):
                break
            assert all(p.poll() is None for p in procs), "an Airflow process exited"
            time.sleep(5)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    runs = _runs(db)
    assert [(r[0][:10], r[1], r[2]) for r in runs] == [(str(FROM), "backfill", "success"), (str(TO), "backfill", "success")], \
        runs + [(tmp_path / "scheduler.log").read_text()[-3000:]]
    with sqlite3.connect(db) as con:
        states = con.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'train_pipeline'").fetchall()
    assert len(states) == 14 and all(s == "success" or (t == "publish" and s == "skipped") for t, s in states), states
    ledger = spark.read.format("delta").load(str(tmp_path / "lake" / "cards" / "etl_ledger")).where("source = 'transactions'")
    assert sorted(str(r["ds"]) for r in ledger.collect()) == [str(START + dt.timedelta(days=i)) for i in range((TO - START).days + 1)]
    assert all(r["balanced"] for r in ledger.collect())
    for ds in (FROM, TO):  # each run trained and evaluated its own cutoff
        assert (tmp_path / "runs" / "cards" / f"ds={ds}" / "evaluation" / "blessing.json").exists(), ds
