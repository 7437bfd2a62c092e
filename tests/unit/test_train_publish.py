"""Train's input checks and publish's refusals (no Spark cluster work needed)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs import publish, train
from jobs.common.config import Settings
from jobs.common.errors import DataError, IntegrityError, NotBlessed
from jobs.common.files import sha256_file, write_json_atomic
from tests.helpers import context


def test_training_frame_and_single_class_refusal(spark, cards):
    names = cards.features.names
    cols = ", ".join(f"`{n}` double" for n in names)
    rows = [tuple([f"t{i}"] + [1.0] * len(names) + [0, 1.0, split]) for i, split in enumerate(["train", "valid", "holdout", "recent"])]
    ts = spark.createDataFrame(rows, f"txn_id string, {cols}, is_fraud int, weight double, split string")
    df = train.training_frame(ts, cards)
    assert df.count() == 2 and train.VALID_COL in df.columns
    counts = train.class_balance(df, "is_fraud")
    assert counts == {"train_pos": 0, "train_neg": 1, "valid_pos": 0, "valid_neg": 1}
    with pytest.raises(DataError, match="the train window needs both classes"):
        train.check_trainable(counts, "training_set cutoff_ds=2026-10-01")


def test_feature_types_mark_categoricals(cards):
    types = dict(zip(cards.features.names, train.feature_types(cards)))
    assert types["channel"] == "c" and types["amount"] == "q"


def _run_dir(cards, settings, blessed: bool, tamper: bool = False):
    ctx = context("publish", cards, settings, "2026-10-01")
    model = ctx.run_dir / "model" / "model.ubj"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"booster")
    sha = sha256_file(model)
    write_json_atomic(ctx.run_dir / "model" / "train.json", {"artifact": str(model), "sha256": sha, "feature_names": ["a"],
                      "feature_types": ["q"], "label": "is_fraud", "params": {}, "counts": {}, "num_workers": 1,
                      "best_iteration": 1, "num_boosted_rounds": 2})
    ev = ctx.run_dir / "evaluation"
    write_json_atomic(ev / "blessing.json", {"blessed": blessed, "artifact_sha256": sha, "mode": "enabled",
                                             "failed": [] if blessed else ["auc"], "reasons": ["x"], "champion_version": None})
    write_json_atomic(ev / "metrics.json", {"auc": 0.9})
    write_json_atomic(ev / "evaluation.json", {})
    (ev / "report.html").write_text("<html></html>")
    (ev / "model_card.md").write_text("# Model card")
    if tamper:
        model.write_bytes(b"another booster")
    return ctx


def test_publish_refuses_unblessed_and_changed_artifacts(cards, settings):
    with pytest.raises(NotBlessed, match="is not blessed"):
        publish.run(_run_dir(cards, settings, blessed=False))
    with pytest.raises(IntegrityError, match="differs from the .* train recorded"):
        publish.run(_run_dir(cards, dataclasses.replace(settings, runs=settings.runs + "2"), blessed=True, tamper=True))
    ctx = _run_dir(cards, dataclasses.replace(settings, runs=settings.runs + "3"), blessed=True)
    (ctx.run_dir / "evaluation" / "blessing.json").unlink()
    with pytest.raises(IntegrityError, match="no evaluation at"):  # fails the task, never a skip
        publish.run(ctx)


def test_publish_writes_version_then_alias(cards, settings):
    ctx = _run_dir(cards, settings, blessed=True)
    publish.run(ctx)
    reg = Path(settings.registry) / "cards"
    champ = json.loads((reg / "aliases" / "champion.json").read_text())
    manifest = json.loads((reg / "versions" / champ["version"] / "manifest.json").read_text())
    assert champ["version"] == f"2026-10-01-{manifest['sha256'][:12]}"
    assert manifest["lineage"]["git_commit"] and manifest["blessing"]["blessed"]


@pytest.mark.parametrize("master,workers,conf,task_cpus", [
    ("local[4]", "auto", {}, "4"),             # one machine: one worker with every core
    ("local[4]", 2, {}, "2"),                  # N workers share the cores
    ("local[4]", 9, {}, "1"),                  # never more workers than cores
    ("local[4]", "auto", {"spark.task.cpus": "1"}, "1"),  # the environment's own setting wins
    ("spark://host:7077", "auto", {}, None),   # a cluster: left to the environment
])
def test_training_session_divides_a_machines_cores_among_the_workers(master, workers, conf, task_cpus):
    base = Settings(spark_master=master, spark_packages=(), landing="", lake="", runs="", gx="", registry="",
                    spark_conf=conf)
    conf = train.training_settings(base, workers).spark_conf
    assert conf.get("spark.task.cpus") == task_cpus
    assert ("-XX:+UseSerialGC" in conf.get("spark.driver.extraJavaOptions", "")) == (task_cpus is not None)
    assert train.local_cores("local[*]") >= 1 and train.local_cores("local") == 1 and train.local_cores(master) in (4, None)


@pytest.mark.parametrize("opts, workers, expected", [
    ("-Dx=1", "auto", "-Dx=1 -XX:+UseSerialGC -Xms128m -Xmn48m"),  # one task slot
    ("", 2, "-XX:+UseSerialGC -Xms256m -Xmn96m"),                  # two slots of two cores each
    ("-Xms1g", "auto", "-Xms1g -XX:+UseSerialGC"),                 # the conf sizes the heap: kept
    ("-XX:NewSize=64m", "auto", "-XX:NewSize=64m -XX:+UseSerialGC"),
    ("-XX:+UseG1GC", "auto", "-XX:+UseG1GC"),                      # the conf names a collector: untouched
])
def test_training_session_jvm_options_keep_what_the_conf_names(opts, workers, expected, monkeypatch):
    monkeypatch.setattr(train, "java_accepts", lambda option: False)  # a JVM without the native trim
    base = Settings(spark_master="local[4]", spark_packages=(), landing="", lake="", runs="", gx="", registry="",
                    spark_conf={"spark.driver.extraJavaOptions": opts} if opts else {})
    assert train.training_settings(base, workers).spark_conf["spark.driver.extraJavaOptions"] == expected


@pytest.mark.parametrize("opts, expected", [
    ("", "-XX:+UseSerialGC -Xms128m -Xmn48m -XX:TrimNativeHeapInterval=1000"),
    ("-XX:+UseG1GC", "-XX:+UseG1GC -XX:TrimNativeHeapInterval=1000"),
    ("-XX:TrimNativeHeapInterval=0", "-XX:TrimNativeHeapInterval=0 -XX:+UseSerialGC -Xms128m -Xmn48m"),  # kept
])
def test_training_session_trims_the_jvms_native_heap_where_the_jvm_can(opts, expected, monkeypatch):
    monkeypatch.setattr(train, "java_accepts", lambda option: option == train.NATIVE_TRIM)
    base = Settings(spark_master="local[2]", spark_packages=(), landing="", lake="", runs="", gx="", registry="",
                    spark_conf={"spark.driver.extraJavaOptions": opts} if opts else {})
    assert train.training_settings(base, "auto").spark_conf["spark.driver.extraJavaOptions"] == expected


@pytest.mark.parametrize("master, conf, expected", [
    ("local[2]", {}, train.LEAN_WORKER),                                         # one machine: the lean worker
    ("local[2]", {"spark.python.use.daemon": "true"}, {"spark.python.use.daemon": "true"}),  # the conf's own
    ("spark://h:7077", {}, {}),                                                  # a cluster: untouched
])
def test_training_session_starts_the_fits_python_worker_lean_on_one_machine(master, conf, expected):
    base = Settings(spark_master=master, spark_packages=(), landing="", lake="", runs="", gx="", registry="",
                    spark_conf=conf)
    got = train.training_settings(base, "auto").spark_conf
    assert {k: v for k, v in got.items() if k.startswith("spark.python.")} == expected


def test_java_accepts_asks_the_jvm_itself():
    assert train.java_accepts("-Xss1m") and not train.java_accepts("-XX:NoSuchOptionAnywhere=1")


def test_training_session_heap_start_stays_below_the_driver_memory(monkeypatch):
    monkeypatch.setattr(train, "java_accepts", lambda option: False)
    base = Settings(spark_master="local[4]", spark_packages=(), landing="", lake="", runs="", gx="", registry="",
                    spark_conf={"spark.driver.memory": "512m", "spark.task.cpus": "1"})  # 4 slots
    assert train.training_settings(base, 4).spark_conf["spark.driver.extraJavaOptions"] == \
        "-XX:+UseSerialGC -Xms256m -Xmn96m"
    assert [train.jvm_mib(v) for v in ("6g", "512m", "2048k", "300", "1T")] == [6144, 512, 2, 300, 2**20]
    with pytest.raises(ValueError, match="not a memory size"):
        train.jvm_mib("lots")


def _session(master: str, conf: dict[str, str]):
    """What ``task_slots`` reads of a SparkSession: the master and the conf."""
    return SimpleNamespace(sparkContext=SimpleNamespace(master=master, getConf=lambda: SimpleNamespace(get=conf.get)))


@pytest.mark.parametrize("master,conf,device,workers", [
    ("local[4]", {"spark.task.cpus": "4"}, "cpu", 1),  # one machine, after training_settings: one worker
    ("local[4]", {"spark.task.cpus": "4"}, "cuda", 1),  # ... on GPU 0
    ("spark://h:7077", {"spark.executor.instances": "3", "spark.executor.cores": "8", "spark.task.cpus": "2"}, "cpu", 12),
    ("spark://h:7077", {"spark.executor.instances": "3", "spark.executor.cores": "8",  # one worker per executor GPU
                        "spark.executor.resource.gpu.amount": "1"}, "cuda", 3),
    ("spark://h:7077", {"spark.executor.instances": "3", "spark.executor.cores": "8",
                        "spark.executor.resource.gpu.amount": "2"}, "cuda:0", 6),
])
def test_auto_workers_are_the_task_slots_and_on_a_gpu_cluster_the_gpus(master, conf, device, workers):
    spark = _session(master, conf)
    assert train.resolve_workers("auto", spark, device) == workers
    assert train.resolve_workers(workers + 5, spark, device) == workers  # a barrier stage needs them all at once
    assert train.resolve_workers(1, spark, device) == 1
