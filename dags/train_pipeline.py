"""
### train_pipeline__{dataset}

Retraining of the `{dataset}` model, one landing day (`ds`) per run, generated from its dataset spec
(`{spec}`):

`landed` → `etl` → `validate` → `features` → `tune` → `train` → `evaluate` → `publish`

**Which day.** The schedule is a data-interval timetable (`{cron}`, {timezone}): the run for day D starts once
D has ended, and `ds` is D, the start of its interval. A manual trigger processes the day of its logical date
(no logical date: the last complete day); a backfill makes one run per day. Any date of the dataset's history
can run, however old (the DAG's start date, {start_date}, only bounds the scheduler's own runs; catchup is
{catchup}).

**One run at a time** ({max_active_runs} at most): each run evaluates its model against the champion the run
before it left, and `publish` moves the champion only from that one. A backfill of days older than the
champion's may run side by side (`airflow backfill create --max-active-runs N`): those runs are published as
versions and never move the champion.

**Waiting for the day.** `landed` waits (rescheduling itself every {poke}) until every source of the dataset
has its completeness marker for the run's day(s): `<landing>/<source path>/ds=YYYY-MM-DD/_SUCCESS`, which
the upstream system writes after the day's files (an empty folder with only the marker for a day without
rows). After {timeout} without it, the run fails naming the missing marker(s).

Each other task runs exactly one step CLI, `python -m jobs.<step>`, the same command `dvc repro` and a
person at a shell run; the run's values reach it as environment variables (`TRAINYARD_DS`,
`TRAINYARD_START_DS`, `TRAINYARD_DATASET`, `TRAINYARD_CONF`), never spliced into a shell command line.
Every step replaces only its own `ds` partitions, so a retry, a rerun or a backfill of a date replaces that
date and nothing else. `validate` publishes the day's rows to silver only when no critical expectation
failed (write-audit-publish).

**Params** (on a manual trigger, or `airflow dags test DAG_ID DATE -c '{{...}}'`); a value outside its
choices or pattern refuses the run before any task starts:
- `start_ds`: first day of a range that `etl` and `features` (re)process in this run: a one-run backfill
  of history. Empty: the run's `ds` alone (the nightly case).
- `conf`: environment settings, one of the files in `conf/` (default: the deployment's `TRAINYARD_CONF`,
  else `conf/local.yaml`).
- `tune`: run the Optuna search before training; off: the `tune` task only records that training uses
  params.yaml as is.

**Training on a cluster.** `train` runs in the `{pool}` pool, which every dataset's DAG shares, taking
{pool_slots} of its slots (`train.num_workers`; `auto`: all of them). Sized to the cluster's task slots
(`TRAINYARD_TRAINING_SLOTS`; `make run` and `make airflow` create it), the pool never lets two trainings
start barrier stages that together need more slots than the cluster has: each would hold some and wait
forever for the rest.

`publish` exits with code 99 when the evaluation did not bless the model: the task is then *skipped*. It
moves the champion only forward; integrity failures (no evaluation, another artifact, a champion that moved
since evaluate compared against it) fail the task.
"""
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
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import CronDataIntervalTimetable, Param, chain, dag

REPO = Path(__file__).resolve().parents[1]
STEPS = ("etl", "validate", "features", "tune", "train", "evaluate", "publish")
NOT_BLESSED_EXIT = 99  # jobs.common.errors.NotBlessed.exit_code
NOT_LANDED_EXIT = 75   # jobs.landed.NOT_YET
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# the run's day: the start of its data interval (a manual run's logical date names the day it processes)
DS = "{{ (dag_run.logical_date or dag_run.data_interval_start) | ds }}"
# the pool of every dataset's train task, sized to the cluster's task slots (one machine: 1, a training at a time)
TRAINING_POOL = os.environ.get("TRAINYARD_TRAINING_POOL", "trainyard_training")
DEFAULT_SCHEDULE = {"cron": "0 0 * * *", "timezone": "UTC", "start_date": "1970-01-01", "catchup": False,
                    "landing_timeout": "6h", "landing_poke": "5m", "max_active_runs": 1}


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


def step_env(dataset_path: Path) -> dict[str, str]:
    """What every task of a run hands its step CLI (templated by Airflow at run time)."""
    return {"TRAINYARD_DS": DS, "TRAINYARD_START_DS": "{{ params.start_ds }}", "TRAINYARD_DATASET": str(dataset_path),
            "TRAINYARD_CONF": "{{ params.conf }}", "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable}


def training_pool_slots() -> int:
    """The train task's slots in ``TRAINING_POOL``: one per XGBoost worker (params.yaml's, or the file named
    by TRAINYARD_PARAMS, ``train.num_workers``), every slot (``TRAINYARD_TRAINING_SLOTS``) for ``auto``."""
    slots = int(os.environ.get("TRAINYARD_TRAINING_SLOTS", "1"))
    params = Path(os.environ.get("TRAINYARD_PARAMS", "params.yaml"))
    doc = yaml.safe_load((params if params.is_absolute() else REPO / params).read_text()) or {}
    workers = (doc.get("train") or {}).get("num_workers", "auto")
    return slots if workers in (None, "auto", 0) else max(1, min(int(workers), slots))


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


def build(name: str, spec_path: Path, schedule: dict) -> None:
    timeout, poke = duration(schedule["landing_timeout"]), duration(schedule["landing_poke"])
    tz = str(schedule["timezone"])
    doc = __doc__.format(dataset=name, spec=spec_path.relative_to(REPO) if spec_path.is_relative_to(REPO) else spec_path,
                         cron=schedule["cron"], timezone=tz, start_date=schedule["start_date"],
                         catchup="on" if schedule["catchup"] else "off", poke=schedule["landing_poke"],
                         timeout=schedule["landing_timeout"], max_active_runs=schedule["max_active_runs"],
                         pool=TRAINING_POOL, pool_slots=training_pool_slots())
    conf_default, confs = conf_choices()

    @dag(
        dag_id=f"train_pipeline__{name}",
        schedule=CronDataIntervalTimetable(str(schedule["cron"]), timezone=tz),
        start_date=pendulum.parse(str(schedule["start_date"]), tz=tz),
        catchup=bool(schedule["catchup"]),
        # one run at a time by default: each evaluates against the champion the run before it left (two side by
        # side would race for it, and the later publish would fail); a backfill sets its own --max-active-runs
        max_active_runs=int(schedule["max_active_runs"]),
        doc_md=doc,
        tags=["trainyard", name],
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(hours=4)},
        params={
            "dataset": Param(name, enum=[name], description="the dataset this DAG trains (fixed)"),
            "start_ds": Param("", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
                              description="first day of a range to (re)process in this run; empty: ds alone"),
            "conf": Param(conf_default, enum=confs, description="environment settings file (conf/)"),
            "tune": Param(False, type="boolean", description="run the hyperparameter search before training"),
        },
    )
    def train_pipeline():
        env = step_env(spec_path)
        landed = PythonSensor(task_id="landed", python_callable=landing_complete,
                              op_kwargs={"env": env, "timeout_s": timeout.total_seconds()},
                              mode="reschedule", poke_interval=poke.total_seconds(),
                              timeout=(timeout + 2 * poke).total_seconds(),  # the poke fails first, naming the markers
                              retries=0)
        tasks = [
            BashOperator(task_id=step, cwd=str(REPO), env=env, append_env=True,
                         bash_command=f"exec {shlex.quote(sys.executable)} -m jobs.{step}"
                         + (" {% if params.tune %}--set tune.enabled=true{% endif %}" if step == "tune" else ""),
                         do_xcom_push=False,  # steps hand over Delta tables and files, never XCom values
                         skip_on_exit_code=NOT_BLESSED_EXIT if step == "publish" else None,
                         **({"pool": TRAINING_POOL, "pool_slots": training_pool_slots()} if step == "train" else {}))
            for step in STEPS
        ]
        chain(landed, *tasks)

    train_pipeline()


for _name, (_path, _schedule) in dataset_specs().items():
    build(_name, _path, _schedule)
