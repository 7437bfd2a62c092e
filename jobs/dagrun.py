"""Run one DAG through ``airflow dags test`` and follow it in the terminal (``make run``, ``make score``).

    python -m jobs.dagrun DAG_ID DS [--conf-json '{...}'] [--log state/airflow-DAG_ID.log]

Airflow's own output (every task's log lines, the scheduler loop's) goes to the log file as it comes; the
terminal gets what a person follows: each step's line as the step finishes (``trainyard step done:``:
step, days, rows, seconds, its key figure), progress lines of long steps (a Spark stage or XGBoost rounds,
at most every few seconds) and failures. Exit code: Airflow's; on a failure the log's last error lines are
shown with the log's path.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from jobs.common.cli import STEP_DONE
from jobs.common.config import REPO_ROOT

# a step's own lines that the terminal shows: its progress, and failures
PROGRESS = re.compile(r"^\w+: (Spark stage \d+|round \d+)")
FAILURE = re.compile(r"trainyard \w+ FAILED|nothing to do, skipped")
# what Airflow puts around a task's output line: "<time> [info     ] <line>   [airflow.task...] loc=..."
AIRFLOW_PREFIX = re.compile(r"^\S+ \[\w+ *\] ")
AIRFLOW_SUFFIX = re.compile(r"\s+\[airflow\.[^\]]*\].*$")


def message(line: str) -> str:
    """A task's own output line out of Airflow's log line around it."""
    return AIRFLOW_SUFFIX.sub("", AIRFLOW_PREFIX.sub("", line.rstrip("\n")))


def shown(line: str) -> str | None:
    """What the terminal shows for one line of ``airflow dags test`` output, or None."""
    text = message(line)
    if STEP_DONE in text:
        return "  " + text.split(STEP_DONE, 1)[1].strip()
    if PROGRESS.match(text):
        return "      ... " + text
    if FAILURE.search(text):
        return "  " + text
    return None


def follow(cmd: list[str], log: Path, out=None) -> int:
    """Run ``cmd``, every line of its output to ``log``, the lines a person follows to ``out``; its exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as keep, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 env=env, errors="replace", bufsize=1) as proc:
        for line in proc.stdout:
            keep.write(line)
            keep.flush()
            text = shown(line)
            if text:
                print(text, file=out or sys.stdout, flush=True)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.dagrun", description=__doc__.splitlines()[0])
    p.add_argument("dag_id")
    p.add_argument("ds", help="the logical date, YYYY-MM-DD")
    p.add_argument("--conf-json", default="{}", help="the DAG run's conf (its params)")
    p.add_argument("--log", default=None, help="where Airflow's output goes (default state/airflow-DAG_ID.log)")
    a = p.parse_args(argv)
    log = Path(a.log or REPO_ROOT / "state" / f"airflow-{a.dag_id}.log")
    airflow = str(Path(sys.executable).with_name("airflow"))
    print(f"{a.dag_id} for {a.ds} through Airflow (its log: {os.path.relpath(log)})", flush=True)
    t0 = time.perf_counter()
    rc = follow([airflow, "dags", "test", a.dag_id, a.ds, "-c", a.conf_json], log)
    if rc != 0:
        errors = [message(x) for x in log.read_text(errors="replace").splitlines() if re.search(r"FAILED|ERROR|Error", x)]
        print("\n".join(errors[-15:]), file=sys.stderr)
        print(f"{a.dag_id} FAILED after {time.perf_counter() - t0:.0f} s; full log: {log}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
