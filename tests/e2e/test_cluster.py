"""The pipeline on a real multi-process Spark cluster: a standalone master and two one-core workers (separate
JVMs started with ``spark-class`` from the pyspark package, on 127.0.0.1), whose executors run a Python
that has the libraries but not this repository (a venv of its own that sees the main venv's packages, not
its editable install of trainyard), with the landing zone, the lake and the registry in a moto S3 server.
The step CLIs run etl -> validate -> features -> train (two Spark workers) -> evaluate -> publish with
conf/cluster.yaml's settings, as Airflow runs them; the same training set trained on one machine (the
local engine) gives a model of the same holdout AUC. Then two datasets train at once, one worker each."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from jobs import synth
from tests.conftest import REPO, SPARK_CONF, _free_port
from tests.helpers import derived_cards_spec, stop_processes

pytestmark = pytest.mark.cluster  # 6-11 min on 2 cores: `make test` runs it, `pytest -m "not cluster"` does not
START, DS = dt.date(2026, 10, 1), dt.date(2026, 10, 20)
BUCKET = "trainyard-landing"


def _executor_python(root: Path) -> Path:
    """A venv whose interpreter sees the main venv's site-packages as a plain path entry: its packages
    import, its ``.pth`` files (the editable install of trainyard among them) are not run."""
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(root)],
                   check=True)
    site = Path(subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "main_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin" / "python"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    """A standalone master and two workers (1 core, 2 GB each) on loopback; yields (master URL, executor
    Python, environment of the workers); stops every process it started, by its pid."""
    import pyspark
    root = tmp_path_factory.mktemp("cluster")
    python = _executor_python(root / "executor-venv")
    check = subprocess.run([str(python), "-c", "import xgboost, pyarrow, pandas\nimport jobs"], cwd=root,
                           capture_output=True, text=True)
    assert "No module named 'jobs'" in check.stderr, check.stderr  # the libraries, not the repository
    spark_home = Path(pyspark.__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "PYSPARK", "SPARK_"))}
    env.update(s3_server, SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1")
    port, ui = _free_port(), _free_port()
    master = f"spark://127.0.0.1:{port}"
    cls = str(spark_home / "bin" / "spark-class")
    procs = []
    logs = root / "logs"
    logs.mkdir()
    try:
        procs.append(subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                       "--port", str(port), "--webui-port", str(ui)], cwd=root, env=env,
                                      stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT))
        for i in range(2):
            work = root / f"worker{i}"
            work.mkdir()
            procs.append(subprocess.Popen([cls, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                           "--webui-port", str(_free_port()), "--cores", "1", "--memory", "2g",
                                           "--work-dir", str(work), master], cwd=work, env=env,
                                          stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT))
        deadline, alive = time.time() + 120, 0
        while time.time() < deadline and alive < 2:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                    alive = sum(w["state"] == "ALIVE" for w in json.load(r)["workers"])
            except OSError:
                pass
        assert alive == 2, (logs / "master.log").read_text()[-3000:]
        yield master, python, env, root, ui
    finally:
        stop_processes(procs)


def _conf(root: Path, master: str, python: Path, runs: str) -> Path:
    """conf/cluster.yaml with the tests' Spark settings (small shuffles, no UI) and run folders in ``runs``."""
    doc = yaml.safe_load((REPO / "conf" / "cluster.yaml").read_text())
    doc["spark"]["master"] = master
    doc["spark"]["conf"].update({k: v for k, v in SPARK_CONF.items() if k != "spark.driver.memory"},
                                **{"spark.pyspark.python": str(python), "spark.executor.memory": "1g"})
    doc["storage"].update(runs=runs, gx=str(root / "gx"))
    path = root / f"conf-{runs.rstrip('/').rsplit('/', 1)[-1]}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _step(step: str, conf: Path, env: dict, *args: str) -> str:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", f"jobs.{step}", "--ds", DS.isoformat(), "--conf", str(conf), *args],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{step}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    print(f"{step} {' '.join(args)} on {yaml.safe_load(conf.read_text())['spark']['master']}: "
          f"{time.monotonic() - t0:.0f} s")
    return out.stdout


@pytest.fixture(scope="module")
def pipeline(cluster):
    """The whole pipeline once on the cluster, then train + evaluate of the same training set on one machine."""
    master, python, env, root, _ = cluster
    local = root / "landing"
    synth.generate(synth.SynthConfig(start=START, days=(DS - START).days + 1, rows_per_day=5000, seed=21), local / "cards")
    s3 = _s3(env)
    for f in sorted(local.rglob("*.csv")):
        s3.upload_file(str(f), BUCKET, f"landing/{f.relative_to(local).as_posix()}")
    step_env = {**env, "TRAINYARD_S3_BUCKET": BUCKET}
    conf = _conf(root, master, python, f"s3://{BUCKET}/runs")  # as conf/cluster.yaml: run folders on S3
    span = ("--start-ds", START.isoformat())
    out = {step: _step(step, conf, step_env, *args) for step, args in
           (("etl", span), ("validate", span), ("features", span),
            ("train", ("--set", "train.num_workers=2")), ("evaluate", ()), ("publish", ()))}
    one_machine = _conf(root, "local[2]", Path(sys.executable), str(root / "runs-local"))
    out["train_local"] = _step("train", one_machine, step_env)
    out["evaluate_local"] = _step("evaluate", one_machine, step_env)
    return root, step_env, out


def _run_doc(root: Path, runs: str, *parts: str, dataset: str = "cards") -> dict:
    """A JSON file of a run folder: on S3 for the cluster's runs (``runs`` is a prefix of the bucket), on
    this machine's disk for the one-machine run (``runs-local``)."""
    if runs == "runs-local":
        return json.loads((root / runs / dataset / f"ds={DS}").joinpath(*parts).read_text())
    from jobs.common import storage
    return json.loads(storage.read_bytes("/".join([f"s3://{BUCKET}/{runs}", dataset, f"ds={DS}", *parts])))


def test_the_model_is_trained_by_two_spark_workers_on_the_cluster(pipeline, monkeypatch):
    root, env, out = pipeline
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(k, env[k])
    doc = _run_doc(root, "runs", "model", "train.json")
    assert doc["engine"] == "spark" and doc["num_workers"] == 2 and doc["trained_on"] == "cpu"
    assert re.search(r"on 2 Spark workers -> ", out["train"]), out["train"]
    assert _run_doc(root, "runs-local", "model", "train.json")["engine"] == "local"


def test_the_lake_is_on_s3_and_the_model_is_published_to_the_s3_registry(pipeline):
    root, env, out = pipeline
    s3 = _s3(env)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="lake/cards/")
            for o in page.get("Contents", [])]
    for table in ("silver_transactions", "features", "training_set"):
        assert any(k.startswith(f"lake/cards/{table}/_delta_log/") for k in keys), table
    assert re.search(r"publish cards: version \S+ published", out["publish"]), out["publish"]
    run = {o["Key"][len(f"runs/cards/ds={DS}/"):] for o in
           s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/cards/ds={DS}/").get("Contents", [])}
    assert {"model/model.ubj", "model/train.json", "evaluation/blessing.json", "lineage/etl.json",
            "lineage/publish.json"} <= run  # every step's run folder, on the shared storage
    assert not [k for k in run if k.startswith("model/checkpoints/")]  # written by a worker, gone with the model
    registry = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="registry/").get("Contents", [])]
    assert any(k.endswith("model.ubj") for k in registry), registry


def test_the_cluster_model_has_the_holdout_auc_of_the_one_machine_model(pipeline, monkeypatch):
    root, env, _ = pipeline
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(k, env[k])
    cluster_auc = _run_doc(root, "runs", "evaluation", "evaluation.json")["overall"]["auc"]
    local_auc = _run_doc(root, "runs-local", "evaluation", "evaluation.json")["overall"]["auc"]
    assert cluster_auc > 0.7 and abs(cluster_auc - local_auc) <= 0.005, (cluster_auc, local_auc)


def _s3(env: dict):
    import boto3
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _active_apps(ui: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
        return sum(1 for app in json.load(r)["activeapps"] if app.get("cores", 0) > 0)


def test_two_datasets_train_at_once_one_worker_each(pipeline, cluster):
    """A second dataset (cards_b, whose training set is a copy of cards', so that both trainings start at
    once) and cards train side by side, ``num_workers: 1`` each: each application asks for its worker's core
    only (``train.training_settings``), so both hold an executor at the same time and neither barrier stage
    waits on the other's slot."""
    root, env, _ = pipeline
    master, python, _, _, ui = cluster
    s3 = _s3(env)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="lake/cards/training_set/"):
        for o in page.get("Contents", []):
            s3.copy_object(Bucket=BUCKET, CopySource={"Bucket": BUCKET, "Key": o["Key"]},
                           Key=o["Key"].replace("lake/cards/", "lake/cards_b/", 1))
    derived_cards_spec(root / "datasets", "cards_b", START, (DS - START).days + 1)
    conf = _conf(root, master, python, f"s3://{BUCKET}/runs-two")
    step_env = {**env, "TRAINYARD_DATASETS_DIR": str(root / "datasets")}
    procs = {name: subprocess.Popen([sys.executable, "-m", "jobs.train", "--ds", DS.isoformat(), "--conf", str(conf),
                                     "--dataset", name, "--set", "train.num_workers=1"], cwd=REPO, env=step_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("cards", "cards_b")}
    most = 0
    while any(p.poll() is None for p in procs.values()):
        try:
            most = max(most, _active_apps(ui))
        except OSError:
            pass
        time.sleep(0.5)
    outs = {name: p.communicate() for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, (name, outs[name][0][-2000:], outs[name][1][-4000:])
        doc = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs-two/{name}/ds={DS}/model/train.json")["Body"].read())
        assert doc["engine"] == "spark" and doc["num_workers"] == 1 and "on 1 Spark worker -> " in outs[name][0]
    assert most == 2  # both applications held an executor at once
