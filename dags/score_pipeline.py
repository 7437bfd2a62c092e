"""
### score_pipeline__{dataset}

Daily predictions of the `{dataset}` model for one landing day (`ds`), available first, and the shadow
comparison that decides whether the challenger replaces the champion. Generated from `{spec}`:

`landed` → `etl` → `validate` → `score` → `promote` → `monitor`

**Which day, and when.** The same data-interval schedule (`{cron}`, {timezone}) and landing markers as
`train_pipeline__{dataset}`: the run for day D waits (every {poke}, at most {timeout}) for D's
completeness markers, `ds` is D.

**ETL and validation once.** `etl` and `validate` run with `--unless-done`: when a run of the training DAG
already validated D and published it to silver, they exit 98 and are *skipped*; otherwise they do it here.

**Fail clean.** `score` runs whatever `validate` concluded (trigger rule `all_done`): a day that failed a
critical expectation is scored from its staged rows by the baseline. The fallback chain (`score.fallback` in
params.yaml: champion → previous champion → baseline) serves every example of the day into `predictions`,
with `served_by` and a reason code per row, and a `scoring_events` row per scoring; a fallback day is a
warning line in the task log. Only when nothing in the chain can serve, or the day never reached etl, does
the task fail, in one line naming each model's reason.

**Shadow.** A `challenger` (published with `publish.mode: shadow`) scores the same rows into
`shadow_predictions`; `promote` compares it with the champion on the same labelled rows once the labels of
`promote.min_days` shadow days have matured, and promotes it, keeps waiting, or retires it, saying why
(`shadow_decisions`, the registry's event log). No challenger: `promote` has nothing to decide.

**Monitoring.** `monitor` starts `monitor_pipeline__{dataset}` for the day (whatever scoring and promotion
concluded): drift, realized performance and the retraining trigger.

Every other task runs one step CLI (`python -m jobs.<step>`), fed by environment variables; a rerun of a day
replaces that day's partitions.
"""
from __future__ import annotations

from pathlib import Path

from airflow.sdk import chain, dag
from trainyard_dags import ALREADY_DONE_EXIT, DS, common_params, dataset_specs, landed_sensor, schedule_kwargs, spec_label, \
    step_env, step_task, trigger_dag


def build(name: str, spec_path: Path, schedule: dict) -> None:
    doc = __doc__.format(dataset=name, spec=spec_label(spec_path), cron=schedule["cron"], timezone=schedule["timezone"],
                         poke=schedule["landing_poke"], timeout=schedule["landing_timeout"])

    @dag(dag_id=f"score_pipeline__{name}", **schedule_kwargs(schedule), doc_md=doc, tags=["trainyard", name, "scoring"],
         params=common_params(name))
    def score_pipeline():
        env = step_env(spec_path)
        landed = landed_sensor(env, schedule)
        prepare = [step_task(step, env, "--unless-done", skip_on_exit_code=ALREADY_DONE_EXIT) for step in ("etl", "validate")]
        score = step_task("score", env, trigger_rule="all_done")  # a failed validation is scored by the baseline
        monitor = trigger_dag("monitor", f"monitor_pipeline__{name}", "scored__" + DS, conf={"conf": "{{ params.conf }}"},
                              reset_dag_run=True, trigger_rule="all_done")  # a rerun of the day monitors it again
        chain(landed, *prepare, score, step_task("promote", env), monitor)

    score_pipeline()


for _name, (_path, _schedule) in dataset_specs().items():
    build(_name, _path, _schedule)
