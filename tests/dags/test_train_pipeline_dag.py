"""DAG integrity: imports cleanly, wiring only, the expected edges, retries, catchup off."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag
    return DagBag(str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "train_pipeline" in dagbag.dags


def test_edges_are_the_pipeline(dagbag):
    dag = dagbag.dags["train_pipeline"]
    edges = sorted((t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids)
    assert edges == sorted([("etl", "validate"), ("validate", "features"), ("features", "tune"), ("tune", "train"),
                            ("train", "evaluate"), ("evaluate", "publish")])


def test_schedule_catchup_retries_docs(dagbag):
    dag = dagbag.dags["train_pipeline"]
    assert dag.catchup is False
    assert dag.schedule == "@daily" and dag.timetable.expression == "0 0 * * *"
    assert dag.start_date.tzinfo is not None
    assert dag.doc_md and "etl" in dag.doc_md
    assert all(t.retries >= 1 for t in dag.tasks)
    assert dag.params["dataset"] == "cards"


def test_each_task_is_one_step_cli(dagbag):
    dag = dagbag.dags["train_pipeline"]
    for t in dag.tasks:
        assert f"-m jobs.{t.task_id} --ds {{{{ ds }}}}" in t.bash_command
        assert t.do_xcom_push is False
    assert dag.get_task("publish").skip_on_exit_code == [99]


def test_dag_file_imports_no_heavy_library_at_parse_time():
    code = ("import runpy, sys; runpy.run_path('dags/train_pipeline.py'); "
            "heavy = [m for m in ('pyspark', 'xgboost', 'great_expectations', 'jobs') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
