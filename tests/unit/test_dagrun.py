"""What ``make run`` shows of an ``airflow dags test`` run: each step's line as it finishes, progress and
failures, out of Airflow's log lines; everything else only in the log file."""
from __future__ import annotations

import sys

from jobs import dagrun
from jobs.common.cli import STEP_DONE


def _airflow(text: str) -> str:
    return (f"2026-12-07T02:36:59.939359Z [info     ] {text} [airflow.task.hooks.airflow.providers.standard.hooks."
            "subprocess.SubprocessHook] loc=subprocess.py:110\n")


def test_the_terminal_gets_step_lines_progress_and_failures_and_the_log_gets_everything(tmp_path, capsys):
    lines = [_airflow(f"{STEP_DONE} etl       2026-10-30      20,000 rows    12.0 s   19,990 staged for silver"),
             _airflow("Running command: ['/usr/bin/bash', '-c', 'exec python -m jobs.etl']"),
             _airflow("train: round 40 of at most 400; valid aucpr 0.7312"),
             _airflow("features: Spark stage 12 (save) 3/8 tasks"),
             _airflow("trainyard validate FAILED [ValidationFailed]: silver_transactions: expect_column_values_to_not_be_null"),
             "2026-12-07T02:35:54.942770Z [info     ] setting next dagrun info [airflow.models.dag] loc=dag.py:848\n"]
    script = "import sys\n" + "".join(f"print({line!r}, end='')\n" for line in lines) + "sys.exit(3)\n"
    log = tmp_path / "dag.log"
    rc = dagrun.follow([sys.executable, "-c", script], log)
    shown = capsys.readouterr().out.splitlines()
    assert rc == 3 and log.read_text() == "".join(lines)
    assert shown == ["  etl       2026-10-30      20,000 rows    12.0 s   19,990 staged for silver",
                     "      ... train: round 40 of at most 400; valid aucpr 0.7312",
                     "      ... features: Spark stage 12 (save) 3/8 tasks",
                     "  trainyard validate FAILED [ValidationFailed]: silver_transactions: expect_column_values_to_not_be_null"]
