"""Benchmark: a nightly run of one day through Airflow, split per step, for one or more versions of the code.

What a night costs once the history is in Delta: ``airflow dags test train_pipeline__DATASET D`` with no
``start_ds`` (etl and validate one day, features for D and the training set over its windows, train,
evaluate, publish), on the lake ``make run`` left (``state/``). Each version is a git revision checked out
in a worktree under the temp dir and run with this checkout's .venv (``PYTHONPATH`` and the DAG folder point
at the worktree); the versions alternate, ``--repeat`` runs each, and each run is a fresh ``airflow dags
test`` process. Timed: the whole command (wall), and per task its duration as Airflow recorded it in the
metadata database (``state/airflow``); medians, and each version's ratio to the first.

    .venv/bin/python bench/bench_nightly.py --rev HEAD --repeat 3                       # the split
    .venv/bin/python bench/bench_nightly.py --rev baseline=abc123 --rev candidate=HEAD  # alternating

Needs ``make run`` first (the history, the champion, Airflow's database). A run replaces day D's partitions
and republishes the same model, so the runs leave the lake as they found it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worktree(rev: str, where: Path) -> Path:
    """The code of ``rev`` in a worktree (this checkout itself for ``.``)."""
    if rev == ".":
        return ROOT
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    path = where / sha[:12]
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True, capture_output=True)
        for shared in ("state", "data/landing"):  # the code resolves these against its own root: this checkout's lake,
            (path / shared).symlink_to(ROOT / shared)  # landing, jars, JVM archive and Airflow database
    return path


def task_seconds(home: Path, dag_id: str, run_id: str) -> dict[str, float]:
    import sqlite3
    with sqlite3.connect(home / "airflow.db") as con:
        return {t: d for t, d in con.execute("SELECT task_id, duration FROM task_instance WHERE dag_id = ? AND run_id = ?",
                                             (dag_id, run_id)).fetchall() if d is not None}


def last_run_id(home: Path, dag_id: str) -> str:
    import sqlite3
    with sqlite3.connect(home / "airflow.db") as con:
        return con.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)).fetchone()[0]


def one_run(code: Path, dataset: str, ds: str, home: Path) -> dict:
    dag_id = f"train_pipeline__{dataset}"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(code / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(code / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PYTHONPATH": str(code), "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    conf = json.dumps({"conf": "conf/local.yaml", "publish_mode": "direct"})
    t0 = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "test", dag_id, ds, "-c", conf],
                          cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{code}: dags test failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    if f"{code}/state/runs" not in done.stdout + done.stderr:  # evaluate prints its report's path, under its root
        raise SystemExit(f"{code}: the run's output names no report under {code}/state: not that code's run?")
    return {"wall": wall, **task_seconds(home, dag_id, last_run_id(home, dag_id))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", action="append", default=[], help="NAME=REV or REV (repeatable; default: this checkout)")
    p.add_argument("--dataset", default="cards")
    p.add_argument("--ds", default="2026-10-30", help="the night's day (its history must be in the lake)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    home = ROOT / "state" / "airflow"
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        versions = {}
        for item in a.rev or ["current=."]:
            name, _, rev = item.rpartition("=")
            versions[name or rev] = worktree(rev, Path(tmp))
        runs: dict[str, list[dict]] = {n: [] for n in versions}
        for i in range(a.repeat):
            for name, code in versions.items():
                r = one_run(code, a.dataset, a.ds, home)
                runs[name].append(r)
                print(f"run {i + 1} {name}: wall {r['wall']:.1f} s; " +
                      ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k != "wall"), flush=True)
        first = next(iter(runs))
        steps = [k for k in runs[first][0] if k != "wall"]
        print(f"\n| version | wall (median) | {' | '.join(steps)} | ratio |")
        print("| --- | ---: |" + " ---: |" * len(steps) + " ---: |")
        base = statistics.median(r["wall"] for r in runs[first])
        for name, rs in runs.items():
            med = statistics.median(r["wall"] for r in rs)
            cells = " | ".join(f"{statistics.median(r.get(s, float('nan')) for r in rs):.1f}" for s in steps)
            print(f"| {name} | {med:.1f} s | {cells} | {med / base:.2f}x |")
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)  # the temp dir's worktrees are gone


if __name__ == "__main__":
    main()
