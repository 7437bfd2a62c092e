"""
### train_pipeline__{dataset}

Retraining of the `{dataset}` model, one landing day (`ds`) per run, generated from its dataset spec
(`{spec}`):

`landed` → `etl` → `validate` → `features` → `tune` → `train` → `evaluate` → `publish`

**When.** {when}

**Which day.** The timetable is a data-interval one (`{cron}`, {timezone}): the run for day D starts once
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
- `reason`: why this run was started; `monitor_pipeline__{dataset}` sets it when it starts the run (the
  signals that made retraining due). It is recorded in the published version's manifest (`trigger`).
- `publish_mode`: `shadow` (a blessed model becomes the challenger, scored beside the champion by
  `score_pipeline__{dataset}` until its `promote` step decides), `direct` (it becomes the champion at once;
  `make run`), or empty: params.yaml's `publish.mode` ({publish_mode}).

**Training on a cluster.** `train` runs in the `{pool}` pool, which every dataset's DAG shares, taking
{pool_slots} of its slots (`train.num_workers`; `auto`: all of them). Sized to the cluster's task slots
(`TRAINYARD_TRAINING_SLOTS`; `make run` and `make airflow` create it), the pool never lets two trainings
start barrier stages that together need more slots than the cluster has: each would hold some and wait
forever for the rest.

`publish` exits with code 99 when the evaluation did not bless the model: the task is then *skipped*. It
moves an alias only forward; integrity failures (no evaluation, another artifact, a champion that moved
since evaluate compared against it) fail the task.
"""
from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import Param, chain, dag
from trainyard_dags import common_params, dataset_specs, landed_sensor, params_file, schedule_kwargs, spec_label, step_env, \
    step_task

STEPS = ("etl", "validate", "features", "tune", "train", "evaluate", "publish")
NOT_BLESSED_EXIT = 99  # jobs.common.errors.NotBlessed.exit_code
# the pool of every dataset's train task, sized to the cluster's task slots (one machine: 1, a training at a time)
TRAINING_POOL = os.environ.get("TRAINYARD_TRAINING_POOL", "trainyard_training")


def training_pool_slots(params: dict) -> int:
    """The train task's slots in ``TRAINING_POOL``: one per XGBoost worker (params' ``train.num_workers``),
    every slot (``TRAINYARD_TRAINING_SLOTS``) for ``auto``."""
    slots = int(os.environ.get("TRAINYARD_TRAINING_SLOTS", "1"))
    workers = (params.get("train") or {}).get("num_workers", "auto")
    return slots if workers in (None, "auto", 0) else max(1, min(int(workers), slots))


NIGHTLY = "Every night, on the schedule below, and when `monitor_pipeline__{dataset}` finds retraining due."
ON_TRIGGER = ("When `monitor_pipeline__{dataset}` finds retraining due (drift, realized performance or fairness "
              "over several days; params.yaml `monitor.trigger`), or by hand. Not on a clock: "
              "`monitor.trigger.nightly_training: true` schedules it every night as well.")


def nightly_training(params: dict) -> bool:
    """params.yaml ``monitor.trigger.nightly_training``: the DAG also runs on its schedule (default: only when
    the monitor or a person starts it)."""
    return bool(((params.get("monitor") or {}).get("trigger") or {}).get("nightly_training", False))


def build(name: str, spec_path: Path, schedule: dict) -> None:
    params = params_file(spec_path)  # params.yaml with this dataset's overrides
    nightly = nightly_training(params)
    doc = __doc__.format(dataset=name, spec=spec_label(spec_path), cron=schedule["cron"], timezone=schedule["timezone"],
                         start_date=schedule["start_date"], catchup="on" if schedule["catchup"] else "off",
                         poke=schedule["landing_poke"], timeout=schedule["landing_timeout"],
                         max_active_runs=schedule["max_active_runs"], pool=TRAINING_POOL, pool_slots=training_pool_slots(params),
                         publish_mode=(params.get("publish") or {}).get("mode", "direct"),
                         when=(NIGHTLY if nightly else ON_TRIGGER).format(dataset=name))
    timing = schedule_kwargs(schedule)
    if not nightly:
        timing["schedule"] = None

    @dag(
        dag_id=f"train_pipeline__{name}",
        # one run at a time by default: each evaluates against the champion the run before it left (two side by
        # side would race for it, and the later publish would fail); a backfill sets its own --max-active-runs
        **timing,
        doc_md=doc,
        tags=["trainyard", name],
        params={
            **common_params(name),
            "start_ds": Param("", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
                              description="first day of a range to (re)process in this run; empty: ds alone"),
            "tune": Param(False, type="boolean", description="run the hyperparameter search before training"),
            "reason": Param("", type="string", maxLength=4000,
                            description="why this run was started (the monitor's retraining reason); recorded in the manifest"),
            "publish_mode": Param("", enum=["", "shadow", "direct"],
                                  description="shadow: the model becomes the challenger; direct: the champion; "
                                              "empty: params.yaml's publish.mode"),
        },
    )
    def train_pipeline():
        env = {**step_env(spec_path, start_ds=True), "TRAINYARD_RUN_REASON": "{{ params.reason }}"}
        landed = landed_sensor(env, schedule)
        args = {"tune": "{% if params.tune %}--set tune.enabled=true{% endif %}",
                "publish": "{% if params.publish_mode %}--set publish.mode={{ params.publish_mode }}{% endif %}"}
        tasks = [step_task(step, env, args.get(step, ""),
                           skip_on_exit_code=NOT_BLESSED_EXIT if step == "publish" else None,
                           **({"pool": TRAINING_POOL, "pool_slots": training_pool_slots(params)} if step == "train" else {}))
                 for step in STEPS]
        chain(landed, *tasks)

    train_pipeline()


for _name, (_path, _schedule) in dataset_specs().items():
    build(_name, _path, _schedule)
