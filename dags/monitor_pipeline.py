"""
### monitor_pipeline__{dataset}

Watches the `{dataset}` model every day and starts its retraining when the world has moved. Generated from
`{spec}`; `score_pipeline__{dataset}` starts it after scoring a day, for that day (`ds`); a person can
start it for any scored day (a rerun replaces that day's figures).

`monitor` → `decide` → `retrain`

**`monitor`** measures day D against the reference published with the model that served it: each feature's
drift (PSI, and Jensen-Shannon or Wasserstein distance), the scores' drift, volume, null rates, the trend of
failed warning expectations, and, for the day whose labels have matured by D, realized AUC, PR-AUC,
calibration and the gate's fairness checks per slice. Every figure is a row of the `monitoring` Delta table;
the day's drift report is `<runs>/{dataset}/ds=D/monitor/report.html` (`make status` names it).

**`decide`** reads the day's verdict: retraining is due when a signal (data drift share, prediction drift,
realized performance or fairness under its bar) held on N of the last M days, outside the cooldown after the
last trigger (params.yaml `monitor.trigger`). Not due: the task is *skipped* (exit 97), and so is `retrain`.

**`retrain`** starts `train_pipeline__{dataset}` for D (run `retrain__D`, once per day however often this
DAG reruns) with the reason in its conf; the model it publishes carries that reason in its manifest.
"""
from __future__ import annotations

from pathlib import Path

from airflow.sdk import chain, dag
from trainyard_dags import DEFAULT_ARGS, DS, common_params, dataset_specs, spec_label, step_env, step_task, trigger_dag

NO_RETRAIN_EXIT = 97  # jobs.monitor.NO_RETRAIN_EXIT


def build(name: str, spec_path: Path) -> None:
    @dag(dag_id=f"monitor_pipeline__{name}", schedule=None, start_date=None, catchup=False, max_active_runs=1,
         doc_md=__doc__.format(dataset=name, spec=spec_label(spec_path)), tags=["trainyard", name, "monitoring"],
         params=common_params(name), default_args=DEFAULT_ARGS)
    def monitor_pipeline():
        env = step_env(spec_path)
        monitor = step_task("monitor", env)
        decide = step_task("monitor", env, "--verdict", task_id="decide", xcom=True, skip_on_exit_code=NO_RETRAIN_EXIT,
                           retries=0)
        retrain = trigger_dag("retrain", f"train_pipeline__{name}", "retrain__" + DS,
                              conf={"reason": "{{ ti.xcom_pull(task_ids='decide') }}", "conf": "{{ params.conf }}"},
                              skip_when_already_exists=True)
        chain(monitor, decide, retrain)

    monitor_pipeline()


for _name, (_path, _schedule) in dataset_specs().items():
    build(_name, _path)
