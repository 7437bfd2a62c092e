"""
### train_pipeline

Nightly retraining of a tabular model, one data interval (`ds`) per run:

`etl` → `validate` → `features` → `tune` → `train` → `evaluate` → `publish`

Each task runs exactly one step CLI, `python -m jobs.<step> --ds {{ ds }}`, the same command `dvc repro` and a
person at a shell run; no step logic lives here. Every step replaces only its own `ds` partitions, so a retry,
a rerun or a backfill of a date replaces that date and nothing else.

**Params** (set them on a manual trigger, or `airflow dags test train_pipeline DATE -c '{...}'`):
- `dataset`: a spec in `conf/datasets/` (`cards`, `adult`, ...).
- `start_ds`: first day of a range that `etl` and `features` (re)process in this run: a one-run backfill
  of history. Empty: the run's `ds` alone (the nightly case).
- `conf`: environment settings (`conf/local.yaml` by default).
- `tune`: run the Optuna search before training (`tune.enabled=true`); off by default: the `tune` task then
  only records that training uses params.yaml as is.

`publish` exits with code 99 when the evaluation did not bless the model: the task is then *skipped*,
not failed, and the champion stays where it was.
"""
from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, chain, dag

REPO = Path(__file__).resolve().parents[1]
STEPS = ("etl", "validate", "features", "tune", "train", "evaluate", "publish")
NOT_BLESSED_EXIT = 99  # jobs.common.errors.NotBlessed.exit_code


def step_command(step: str) -> str:
    """The step's CLI, templated on the run's ds and params (rendered by Airflow at run time)."""
    return (f"{sys.executable} -m jobs.{step} --ds {{{{ ds }}}} --dataset {{{{ params.dataset }}}} "
            f"--conf {{{{ params.conf }}}}{{% if params.start_ds %}} --start-ds {{{{ params.start_ds }}}}{{% endif %}}"
            + (" {% if params.tune %}--set tune.enabled=true{% endif %}" if step == "tune" else ""))


@dag(
    dag_id="train_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,  # backfill dates may run side by side; each owns its partitions
    doc_md=__doc__,
    tags=["trainyard"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(hours=4)},
    params={
        "dataset": Param("cards", type="string", description="dataset spec name (conf/datasets/NAME.yaml)"),
        "start_ds": Param("", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
                          description="first day of a range to (re)process in this run; empty: ds alone"),
        "conf": Param("conf/local.yaml", type="string", description="environment settings file"),
        "tune": Param(False, type="boolean", description="run the hyperparameter search before training"),
    },
)
def train_pipeline():
    tasks = [
        BashOperator(task_id=step, bash_command=step_command(step), cwd=str(REPO),
                     do_xcom_push=False,  # steps hand over Delta tables and files, never XCom values
                     skip_on_exit_code=NOT_BLESSED_EXIT if step == "publish" else None)
        for step in STEPS
    ]
    chain(*tasks)


train_pipeline()
