"""DAG integrity: one train_pipeline and one score_pipeline DAG per dataset spec, imports cleanly, wiring
only, the expected edges, a data-interval schedule whose run processes the day that ended, params that
refuse anything but their choices, retries, catchup off for the nightly DAG."""
from __future__ import annotations

import subprocess
import sys

import pendulum
import pytest

from tests.conftest import REPO

STEPS = ["landed", "etl", "validate", "features", "tune", "train", "evaluate", "publish"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag
    return DagBag(str(REPO / "dags"))


def test_one_dag_per_dataset_spec_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    specs = sorted(p.stem for p in (REPO / "conf" / "datasets").glob("*.yaml"))
    assert sorted(dagbag.dags) == sorted(f"{kind}__{s}" for s in specs
                                         for kind in ("train_pipeline", "score_pipeline", "monitor_pipeline"))
    assert "cards" in specs


def test_edges_are_the_pipeline(dagbag):
    dag = dagbag.dags["train_pipeline__cards"]
    edges = sorted((t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids)
    assert edges == sorted(zip(STEPS, STEPS[1:]))


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """The DAGs parsed with ``monitor.trigger.nightly_training: true``."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["monitor"]["trigger"]["nightly_training"] = True
    path = tmp_path_factory.mktemp("nightly") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("TRAINYARD_PARAMS", str(path))
        return DagBag(str(REPO / "dags"))


def test_training_runs_when_the_monitor_starts_it_and_nightly_only_if_params_say_so(dagbag, nightly):
    assert type(dagbag.dags["train_pipeline__cards"].timetable).__name__ == "NullTimetable"  # the default: triggered
    assert "monitor_pipeline__cards" in dagbag.dags["train_pipeline__cards"].doc_md
    assert type(nightly.dags["train_pipeline__cards"].timetable).__name__ == "CronDataIntervalTimetable"


def test_schedule_is_a_data_interval_and_the_nightly_run_processes_the_day_that_ended(nightly):
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction
    dag = nightly.dags["train_pipeline__cards"]
    timetable = coerce_to_core_timetable(dag.timetable)  # the scheduler's own implementation of it
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable" and dag.catchup is False
    assert dag.start_date.tzinfo is not None and dag.start_date.year == 1970  # no start date blocks old data
    # the run for Oct 30 starts once Oct 30 has ended (00:00 on Oct 31), and its logical date (ds) is Oct 30
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=TimeRestriction(
        earliest=pendulum.datetime(2026, 10, 30, tz="UTC"), latest=None, catchup=True))
    assert info.logical_date == pendulum.datetime(2026, 10, 30, tz="UTC")
    assert info.run_after == pendulum.datetime(2026, 10, 31, tz="UTC")
    now = pendulum.datetime(2026, 10, 31, 0, 30, tz="UTC")  # a manual run without a date: the last complete day
    interval = timetable.infer_manual_data_interval(run_after=now)
    assert (interval.start, interval.end) == (pendulum.datetime(2026, 10, 30, tz="UTC"), pendulum.datetime(2026, 10, 31, tz="UTC"))
    assert all(t.retries >= 1 for t in dag.tasks if t.task_id != "landed")
    assert dag.doc_md and "_SUCCESS" in dag.doc_md and "train_pipeline__cards" in dag.doc_md


def test_each_task_is_one_step_cli_fed_by_environment_variables(dagbag):
    dag = dagbag.dags["train_pipeline__cards"]
    for t in dag.tasks[1:]:
        assert t.bash_command.startswith("exec ") and f"-m jobs.{t.task_id}" in t.bash_command
        # no user value in the command line: only flags chosen by a validated boolean or enum param
        assert "params." not in t.bash_command.replace("params.tune", "").replace("params.publish_mode", "")
        assert t.env["TRAINYARD_RUN_REASON"] == "{{ params.reason }}"  # free text: an environment variable only
        assert t.env["TRAINYARD_DS"].startswith("{{ (dag_run.logical_date or dag_run.data_interval_start)")
        assert t.env["TRAINYARD_DATASET"].endswith("conf/datasets/cards.yaml") and t.append_env
        assert t.do_xcom_push is False
    assert dag.get_task("publish").skip_on_exit_code == [99]
    assert dag.params.validate()["publish_mode"] == ""  # params.yaml's publish.mode unless a run says otherwise
    landed = dag.get_task("landed")
    assert landed.mode == "reschedule" and landed.timeout > landed.op_kwargs["timeout_s"]


@pytest.mark.parametrize("conf", [{"dataset": "cards; touch /tmp/x"}, {"conf": "conf/local.yaml; id"},
                                  {"conf": "/etc/passwd"}, {"start_ds": "2026-10-01 && id"}, {"tune": "true; id"}])
def test_params_refuse_anything_but_their_choices(dagbag, conf):
    import copy

    from airflow.sdk.exceptions import ParamValidationError
    params = copy.deepcopy(dagbag.dags["train_pipeline__cards"].params)
    with pytest.raises(ParamValidationError):
        params.update(conf)
        params.validate()


@pytest.mark.parametrize("dag_file", ["train_pipeline", "score_pipeline", "monitor_pipeline"])
def test_dag_file_imports_no_heavy_library_at_parse_time(dag_file):
    code = (f"import runpy, sys; runpy.run_path('dags/{dag_file}.py'); "
            "heavy = [m for m in ('pyspark', 'xgboost', 'great_expectations', 'jobs') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_the_score_dag_prepares_the_day_once_and_scores_whatever_validation_said(dagbag):
    dag = dagbag.dags["score_pipeline__cards"]
    steps = ["landed", "etl", "validate", "score", "promote", "monitor"]
    assert sorted((t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids) == sorted(zip(steps, steps[1:]))
    for step in ("etl", "validate"):  # done by the training DAG's run of the day: skipped
        task = dag.get_task(step)
        assert task.bash_command.endswith(f"-m jobs.{step} --unless-done") and task.skip_on_exit_code == [98]
    assert dag.get_task("score").trigger_rule == "all_done"  # a failed validation is served by the baseline
    assert dag.get_task("promote").trigger_rule == "all_success"
    assert dag.get_task("landed").mode == "reschedule"
    assert all(dag.get_task(t).env["TRAINYARD_START_DS"] == "" for t in steps[1:-1])  # one day, never a range
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable" and "score_pipeline__cards" in dag.doc_md
    monitor = dag.get_task("monitor")  # whatever scoring concluded, the day is monitored; a rerun monitors it again
    assert (monitor.trigger_dag_id, monitor.trigger_rule, monitor.reset_dag_run) == ("monitor_pipeline__cards", "all_done", True)
    assert monitor.trigger_run_id.startswith("scored__{{") and monitor.logical_date.endswith("T00:00:01+00:00")


def test_the_monitor_dag_measures_the_day_then_starts_training_only_when_the_verdict_says_so(dagbag):
    dag = dagbag.dags["monitor_pipeline__cards"]
    assert sorted((t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids) == [("decide", "retrain"), ("monitor", "decide")]
    assert type(dag.timetable).__name__ == "NullTimetable" and dag.max_active_runs == 1  # started by the score DAG
    assert dag.get_task("monitor").bash_command.endswith("-m jobs.monitor") and not dag.get_task("monitor").do_xcom_push
    decide = dag.get_task("decide")
    assert decide.bash_command.endswith("-m jobs.monitor --verdict") and decide.skip_on_exit_code == [97] and decide.do_xcom_push
    retrain = dag.get_task("retrain")
    assert retrain.trigger_dag_id == "train_pipeline__cards" and retrain.skip_when_already_exists  # once per day
    assert retrain.conf["reason"] == "{{ ti.xcom_pull(task_ids='decide') }}" and retrain.trigger_run_id.startswith("retrain__")
    assert "train_pipeline__cards" in dag.doc_md


@pytest.mark.parametrize("slots, workers, expected", [("1", "auto", 1), ("4", "auto", 4), ("4", 2, 2), ("4", 9, 4)])
def test_every_datasets_train_task_takes_its_workers_slots_in_the_one_training_pool(slots, workers, expected,
                                                                                     tmp_path, monkeypatch):
    """Two datasets' train tasks share the pool: with slots for only one of them at a time, the second waits
    in Airflow instead of holding half the cluster's slots in a barrier stage that never completes."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["num_workers"] = workers
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("TRAINYARD_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("TRAINYARD_TRAINING_SLOTS", slots)
    monkeypatch.setenv("TRAINYARD_TRAINING_POOL", "cluster_slots")
    dags = {k: v for k, v in DagBag(str(REPO / "dags")).dags.items() if k.startswith("train_pipeline__")}
    assert len(dags) >= 2
    for dag in dags.values():
        train = dag.get_task("train")
        assert (train.pool, train.pool_slots) == ("cluster_slots", expected)
        assert {t.pool for t in dag.tasks if t.task_id != "train"} == {"default_pool"}


def test_a_datasets_own_params_shape_its_dags_only(tmp_path, monkeypatch):
    """A spec's ``params:`` section (here: trained every night, two XGBoost workers) changes that dataset's
    DAG; the others keep params.yaml's."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    doc = yaml.safe_load((REPO / "conf" / "datasets" / "cards.yaml").read_text())
    doc.update(name="nightly_cards", params={"monitor": {"trigger": {"nightly_training": True}}, "train": {"num_workers": 2}})
    (tmp_path / "nightly_cards.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("TRAINYARD_DATASETS_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINYARD_TRAINING_SLOTS", "4")
    dags = DagBag(str(REPO / "dags")).dags
    assert type(dags["train_pipeline__nightly_cards"].timetable).__name__ == "CronDataIntervalTimetable"
    assert dags["train_pipeline__nightly_cards"].get_task("train").pool_slots == 2
    assert type(dags["train_pipeline__cards"].timetable).__name__ == "NullTimetable"
    assert dags["train_pipeline__cards"].get_task("train").pool_slots == 4  # auto: every slot
