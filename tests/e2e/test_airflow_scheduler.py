"""A real Airflow (scheduler and API server processes, LocalExecutor, SQLite metadata in a temporary
AIRFLOW_HOME) running a dataset's train_pipeline DAG as it runs in production:

- the scheduler itself creates consecutive scheduled runs (a past start date, catchup on): each run's `ds` is
  the day that had ended and landed, and the run for a day whose landing marker is missing waits, then fails
  naming the marker's path;
- `airflow backfill create` over a date range runs one DAG run per day, side by side, each replacing only
  its own partitions;
- a trigger whose params would inject a shell command is refused before any task runs.

The history before those days is loaded first by the steps themselves (in this process, its shared Spark
session), as `make run` does with `start_ds`."""
from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from jobs import synth
from jobs.common.config import DatasetSpec, Settings, load_params
from tests.conftest import REPO, _free_port, write_conf
from tests.helpers import context, derived_cards_spec, stop_processes

NAME = "nightly"
DAG_ID = f"train_pipeline__{NAME}"
TODAY = dt.datetime.now(dt.timezone.utc).date()
FIRST = TODAY - dt.timedelta(days=23)          # landing history starts here
SCHEDULED = [TODAY - dt.timedelta(days=d) for d in (2, 1)]  # the scheduler's runs (start_date = TODAY - 2)
CHAMPION = TODAY - dt.timedelta(days=3)        # published with the step CLIs before Airflow starts
BACKFILL = [TODAY - dt.timedelta(days=d) for d in (5, 4)]  # older than the champion: published, never promoted
LANDED_UNTIL = TODAY - dt.timedelta(days=2)    # TODAY - 1 has not landed: no files, no marker
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _runs(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT logical_date, run_type, state, run_id FROM dag_run WHERE dag_id = ? "
                           "ORDER BY logical_date", (DAG_ID,)).fetchall()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("scheduler")
    conf = write_conf(root)
    derived_cards_spec(root / "datasets", NAME, FIRST, (LANDED_UNTIL - FIRST).days + 1,
                       schedule={"start_date": SCHEDULED[0].isoformat(), "catchup": True,
                                 "landing_timeout": "30s", "landing_poke": "10s"})
    synth.generate(synth.SynthConfig(start=FIRST, days=(LANDED_UNTIL - FIRST).days + 1, rows_per_day=1200, seed=5),
                   root / "landing" / NAME)
    home = tmp_path_factory.mktemp("airflow-home")
    port = _free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API_AUTH__JWT_SECRET": "trainyard-test-secret",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True", "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
           "TRAINYARD_DATASETS_DIR": str(root / "datasets"), "TRAINYARD_CONF": str(conf), "TRAINYARD_DATASET": NAME,
           "TRAINYARD_PARAMS": str(root / "params.yaml")}
    env.pop("TRAINYARD_DS", None)
    params = load_params(REPO / "params.yaml")
    params["monitor"]["trigger"]["nightly_training"] = True  # training on the clock too, not only when triggered
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    # history and a champion, as the step CLIs would make them, in this process (its shared Spark session)
    spec, settings = DatasetSpec.load(str(root / "datasets" / f"{NAME}.yaml")), Settings.load(conf)
    for step in ("etl", "validate", "features", "train", "evaluate", "publish"):
        ctx = context(step, spec, settings, str(CHAMPION), str(FIRST) if step in ("etl", "validate", "features") else None, params)
        importlib.import_module(f"jobs.{step}").run(ctx)
        ctx.record()
    marker = root / "injected"
    backfill = ["backfill", "create", "--dag-id", DAG_ID, "--from-date", str(BACKFILL[0]), "--to-date", str(BACKFILL[-1]),
                "--max-active-runs", "2"]
    # the backfill's runs are queued before the scheduler starts: SQLite takes one writer at a time, and the
    # CLI's inserts could time out on "database is locked" while the scheduler wrote
    pool = ["pools", "set", env.get("TRAINYARD_TRAINING_POOL", "trainyard_training"), "1", "train tasks"]  # as make run
    for cmd in (["db", "migrate"], pool, ["dags", "reserialize"], backfill):
        out = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, (cmd, out.stdout[-2000:] + out.stderr[-3000:])
    refused = [subprocess.run([AIRFLOW, "dags", "trigger", DAG_ID, "--logical-date", f"{BACKFILL[0]}T00:00:00+00:00",
                               "-c", json.dumps(bad)], env=env, capture_output=True, text=True, cwd=REPO)
               for bad in ({"dataset": f"{NAME}; touch {marker}"}, {"conf": f"conf/local.yaml; touch {marker}"})]
    out = subprocess.run([AIRFLOW, "dags", "unpause", DAG_ID], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    logs = {name: open(root / f"{name}.log", "w") for name in ("api-server", "scheduler")}
    procs = [subprocess.Popen([AIRFLOW, name, *(["--port", str(port)] if name == "api-server" else [])], env=env, cwd=REPO,
                              stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True) for name in logs]
    db = home / "airflow.db"
    try:
        deadline = time.time() + 1500
        while time.time() < deadline:
            runs = _runs(db)
            if len(runs) == len(SCHEDULED) + len(BACKFILL) and all(r[2] in ("success", "failed") for r in runs):
                break
            assert all(p.poll() is None for p in procs), "an Airflow process exited"
            time.sleep(5)
    finally:
        stop_processes(procs, group=True)
    return {"root": root, "home": home, "db": db, "refused": refused, "marker": marker}


def _task_states(db: Path, run_id: str) -> dict[str, str]:
    with sqlite3.connect(db) as con:
        return dict(con.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                                (DAG_ID, run_id)).fetchall())


def test_the_scheduler_runs_each_day_that_landed_and_fails_the_one_that_did_not(airflow, spark):
    runs = {r[0][:10]: r for r in _runs(airflow["db"]) if r[1] == "scheduled"}
    assert sorted(runs) == [str(d) for d in SCHEDULED], runs
    done, missing = SCHEDULED[:1], SCHEDULED[1]
    assert [runs[str(d)][2] for d in SCHEDULED] == ["success", "failed"], \
        [(r, _task_states(airflow["db"], r[3])) for r in runs.values()] + [(airflow["root"] / "scheduler.log").read_text()[-3000:]]
    ledger = spark.read.format("delta").load(str(airflow["root"] / "lake" / NAME / "etl_ledger")).where("source = 'transactions'")
    by_day = {str(r["ds"]): r["run_id"] for r in ledger.collect()}
    for d in done:  # each scheduled run processed its own day, the day that had ended
        assert by_day[str(d)] == runs[str(d)][3] and by_day[str(d)].startswith("scheduled__"), by_day
        assert (airflow["root"] / "runs" / NAME / f"ds={d}" / "evaluation" / "blessing.json").exists()
    assert str(missing) not in by_day
    states = _task_states(airflow["db"], runs[str(missing)][3])
    assert states["landed"] == "failed" and states["etl"] == "upstream_failed", states
    log = "".join(p.read_text() for p in (airflow["home"] / "logs").rglob("*.log")
                  if f"run_id={runs[str(missing)][3]}" in str(p) and "task_id=landed" in str(p))
    expected = airflow["root"] / "landing" / NAME / "transactions" / f"ds={missing}" / "_SUCCESS"
    assert "landing did not complete within 30 s" in log and str(expected) in log, log[-3000:]


def test_a_backfill_runs_the_whole_dag_once_per_day_and_never_moves_the_champion_back(airflow, spark):
    from jobs.registry import open_registry
    runs = [r for r in _runs(airflow["db"]) if r[1] == "backfill"]
    assert [(r[0][:10], r[2]) for r in runs] == [(str(d), "success") for d in BACKFILL], runs
    for r in runs:
        states = _task_states(airflow["db"], r[3])
        assert len(states) == 8 and all(s == "success" or (t == "publish" and s == "skipped") for t, s in states.items()), states
    reg = open_registry(str(airflow["root"] / "registry"))
    moved = [e["version"][:10] for e in reg.history(NAME, "champion")]  # the champion's days, in the order it moved
    assert moved[0] == str(CHAMPION) and moved == sorted(moved) and not set(moved) & {str(d) for d in BACKFILL}, moved
    published = {m["ds"] for m in reg.versions(NAME)}
    for r in runs:  # a blessed backfill day is published as a version, and left the champion where it was
        if _task_states(airflow["db"], r[3])["publish"] == "success":
            assert r[0][:10] in published
    ledger = spark.read.format("delta").load(str(airflow["root"] / "lake" / NAME / "etl_ledger")).where("source = 'transactions'")
    rows = ledger.collect()
    assert sorted(str(r["ds"]) for r in rows) == [str(FIRST + dt.timedelta(days=i)) for i in range((SCHEDULED[0] - FIRST).days + 1)]
    assert all(r["balanced"] for r in rows)
    for d in BACKFILL:  # each run trained and evaluated its own cutoff
        assert (airflow["root"] / "runs" / NAME / f"ds={d}" / "evaluation" / "blessing.json").exists(), d


def test_a_trigger_that_would_inject_a_command_is_refused_before_any_task_runs(airflow):
    for out in airflow["refused"]:
        assert out.returncode != 0 and "Invalid input for param" in out.stdout + out.stderr, out.stdout + out.stderr
    assert not airflow["marker"].exists()
    assert all(r[1] in ("scheduled", "backfill") for r in _runs(airflow["db"]))  # no manual run was created
