"""What every trainyard DAG file shares (dags/train_pipeline.py, score_pipeline.py, monitor_pipeline.py): the
dataset specs they are generated from, the schedule keys of a spec, the step task (one ``python -m
jobs.<step>`` CLI fed by environment variables), the landing sensor and the task that starts another DAG. Airflow puts this folder on the path of every process that
parses DAGs (``[core] plugins_folder``). No pyspark, xgboost or GX here: DAG files are parsed often."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pendulum
import yaml

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NOT_LANDED_EXIT = 75   # jobs.landed.NOT_YET
ALREADY_DONE_EXIT = 98  # jobs.common.errors.AlreadyDone.exit_code: the task is skipped
# the run's day: the start of its data interval (a manual run's logical date names the day it processes)
DS = "{{ (dag_run.logical_date or dag_run.data_interval_start) | ds }}"
DEFAULT_SCHEDULE = {"cron": "0 0 * * *", "timezone": "UTC", "start_date": "1970-01-01", "catchup": False,
                    "landing_timeout": "6h", "landing_poke": "5m", "max_active_runs": 1}
DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(hours=4)}


def _dirs(default: Path, env: str) -> list[Path]:
    """The repository's folder, then any named in ``env`` (os.pathsep-separated), as jobs.common.config does."""
    return [default, *(Path(p) for p in os.environ.get(env, "").split(os.pathsep) if p)]


def dataset_specs() -> dict[str, tuple[Path, dict]]:
    """name -> (spec file, schedule) of every dataset spec (conf/datasets/*.yaml, TRAINYARD_DATASETS_DIR)."""
    specs: dict[str, tuple[Path, dict]] = {}
    for folder in _dirs(REPO / "conf" / "datasets", "TRAINYARD_DATASETS_DIR"):
        for path in sorted(folder.glob("*.yaml")):
            doc = yaml.safe_load(path.read_text()) or {}
            name = str(doc.get("name", ""))
            if not NAME.match(name):
                raise ValueError(f"{path}: dataset name '{name}' must match {NAME.pattern}")
            specs.setdefault(name, (path, {**DEFAULT_SCHEDULE, **(doc.get("schedule") or {})}))
    return specs


def conf_choices() -> tuple[str, list[str]]:
    """(default, choices) of the environment settings a run may name: the files in conf/ (as conf/NAME.yaml);
    the default is the deployment's TRAINYARD_CONF (what scheduled runs use), else conf/local.yaml."""
    choices = [f"conf/{p.name}" for p in sorted((REPO / "conf").glob("*.yaml"))]
    default = os.environ.get("TRAINYARD_CONF") or "conf/local.yaml"
    return default, choices + ([default] if default not in choices else [])


def duration(text: str) -> timedelta:
    """'90s', '5m', '6h', '2d' -> timedelta."""
    m = re.fullmatch(r"(\d+)([smhd])", str(text))
    if not m:
        raise ValueError(f"duration '{text}' is not <number><s|m|h|d>")
    return timedelta(seconds=int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def spec_label(spec_path: Path) -> str:
    return str(spec_path.relative_to(REPO) if spec_path.is_relative_to(REPO) else spec_path)


def schedule_kwargs(schedule: dict) -> dict:
    """The @dag arguments a spec's ``schedule`` sets: a data-interval timetable (the run for day D starts once
    D has ended; its logical date is D), start date, catchup, max_active_runs."""
    from airflow.sdk import CronDataIntervalTimetable
    tz = str(schedule["timezone"])
    return {"schedule": CronDataIntervalTimetable(str(schedule["cron"]), timezone=tz),
            "start_date": pendulum.parse(str(schedule["start_date"]), tz=tz), "catchup": bool(schedule["catchup"]),
            "max_active_runs": int(schedule["max_active_runs"]), "default_args": DEFAULT_ARGS}


def common_params(name: str) -> dict:
    """The params every DAG of a dataset takes: its name (fixed) and the environment settings file."""
    from airflow.sdk import Param
    conf_default, confs = conf_choices()
    return {"dataset": Param(name, enum=[name], description="the dataset this DAG serves (fixed)"),
            "conf": Param(conf_default, enum=confs, description="environment settings file (conf/)")}


def step_env(dataset_path: Path, start_ds: bool = False) -> dict[str, str]:
    """What every task of a run hands its step CLI (templated by Airflow at run time)."""
    return {"TRAINYARD_DS": DS, "TRAINYARD_START_DS": "{{ params.start_ds }}" if start_ds else "",
            "TRAINYARD_DATASET": str(dataset_path), "TRAINYARD_CONF": "{{ params.conf }}",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def step_task(step: str, env: dict[str, str], args: str = "", task_id: str | None = None, xcom: bool = False, **kwargs):
    """One step CLI, ``python -m jobs.<step>``: the run's values reach it as environment variables, never
    spliced into the command line (``args`` are fixed flags, or a template of a validated param). Steps hand
    over Delta tables and files, never XCom values; ``xcom`` pushes the last line the step prints (a short
    text another task's arguments name, e.g. a retraining reason)."""
    from airflow.providers.standard.operators.bash import BashOperator
    return BashOperator(task_id=task_id or step, cwd=str(REPO), env=env, append_env=True,
                        bash_command=f"exec {shlex.quote(sys.executable)} -m jobs.{step}" + (f" {args}" if args else ""),
                        do_xcom_push=xcom, **kwargs)


def params_file(spec_path: Path | None = None) -> dict:
    """params.yaml, or the file named by TRAINYARD_PARAMS, with the overrides of the dataset spec at
    ``spec_path`` laid over it (the params its step CLIs run with; they also refuse a key params.yaml does
    not have, ``jobs.common.config.merge_params``: DAG files import nothing of ``jobs``)."""
    path = Path(os.environ.get("TRAINYARD_PARAMS", "params.yaml"))
    params = yaml.safe_load((path if path.is_absolute() else REPO / path).read_text()) or {}
    overrides = (yaml.safe_load(spec_path.read_text()) or {}).get("params") if spec_path else None

    def merge(base: dict, over: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}
    return merge(params, overrides) if isinstance(overrides, dict) else params


def trigger_dag(task_id: str, dag_id: str, run_id: str, conf: dict, **kwargs):
    """Starts ``dag_id`` for this run's day as run ``run_id``. Its logical date is one second into the day
    (UTC): its ``ds`` is the day, and it never collides with a scheduled or manual run of the day (Airflow
    keeps one run per DAG and logical date), only with itself (the same ``run_id``)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    return TriggerDagRunOperator(task_id=task_id, trigger_dag_id=dag_id, trigger_run_id=run_id, conf=conf,
                                 logical_date=DS + "T00:00:01+00:00", **kwargs)


def landing_complete(env: dict[str, str], timeout_s: float, **context) -> bool:
    """The sensor's poke: ``python -m jobs.landed`` (exit 0: landed, 75: not yet, anything else: an error).
    Past ``timeout_s`` since the first poke, the task fails with the markers still missing."""
    from airflow.sdk.exceptions import AirflowFailException
    out = subprocess.run([sys.executable, "-m", "jobs.landed"], cwd=REPO, env={**os.environ, **env},
                         capture_output=True, text=True)
    print(out.stdout + out.stderr, end="")
    if out.returncode == 0:
        return True
    if out.returncode != NOT_LANDED_EXIT:
        raise AirflowFailException(f"jobs.landed failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    first = context["ti"].get_first_reschedule_date(context)
    waited = (pendulum.now("UTC") - first).total_seconds() if first else 0.0
    if waited >= timeout_s:
        raise AirflowFailException(f"landing did not complete within {timeout_s:.0f} s: {out.stdout.strip()}")
    return False


def landed_sensor(env: dict[str, str], schedule: dict):
    """Waits (rescheduling itself every ``landing_poke``) for every source's completeness marker of the run's
    day(s); fails naming the missing markers after ``landing_timeout``."""
    from airflow.providers.standard.sensors.python import PythonSensor
    timeout, poke = duration(schedule["landing_timeout"]), duration(schedule["landing_poke"])
    return PythonSensor(task_id="landed", python_callable=landing_complete,
                        op_kwargs={"env": env, "timeout_s": timeout.total_seconds()},
                        mode="reschedule", poke_interval=poke.total_seconds(),
                        timeout=(timeout + 2 * poke).total_seconds(),  # the poke fails first, naming the markers
                        retries=0)
