"""Train's input checks and publish's refusals (no Spark cluster work needed)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs import model, publish, train
from jobs.common.config import Settings
from jobs.common.errors import ConfigError, DataError, IntegrityError, NotBlessed
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
    types = dict(zip(cards.features.names, model.feature_types(cards)))
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
    got = train.training_settings(base, workers).spark_conf
    assert got == ({**conf, "spark.task.cpus": task_cpus} if task_cpus else conf)  # nothing else is set
    assert train.local_cores("local[*]") >= 1 and train.local_cores("local") == 1 and train.local_cores(master) in (4, None)


@pytest.mark.parametrize("workers, conf, cores_max", [
    (2, {}, "2"), (2, {"spark.task.cpus": "4"}, "8"),  # N workers ask for their cores, leaving the rest
    ("auto", {}, None),                                 # every core of the cluster
    (2, {"spark.cores.max": "6"}, "6"),                 # the conf's own setting wins
])
def test_a_standalone_training_app_asks_for_its_workers_cores_only(workers, conf, cores_max):
    base = Settings(spark_master="spark://h:7077", spark_packages=(), landing="", lake="", runs="", gx="",
                    registry="", spark_conf=conf)
    assert train.training_settings(base, workers).spark_conf.get("spark.cores.max") == cores_max


def _session(master: str, conf: dict[str, str]):
    """What ``task_slots`` and ``check_cluster`` read of a SparkSession: the master and the conf."""
    return SimpleNamespace(sparkContext=SimpleNamespace(master=master, getConf=lambda: SimpleNamespace(get=conf.get)))


CLUSTER = "spark://h:7077"


@pytest.mark.parametrize("master,conf,registered,device,workers", [
    ("local[4]", {"spark.task.cpus": "4"}, None, "cpu", 1),  # one machine, after training_settings: one worker
    ("local[4]", {"spark.task.cpus": "4"}, None, "cuda", 1),  # ... on GPU 0
    (CLUSTER, {"spark.task.cpus": "2"}, (12, 3), "cpu", 12),  # the slots of the executors that registered
    (CLUSTER, {"spark.executor.resource.gpu.amount": "1"}, (24, 3), "cuda", 3),  # one worker per executor GPU
    (CLUSTER, {"spark.executor.resource.gpu.amount": "2"}, (24, 3), "cuda:0", 6),
])
def test_auto_workers_are_the_task_slots_and_on_a_gpu_cluster_the_gpus(master, conf, registered, device, workers,
                                                                       monkeypatch):
    monkeypatch.setattr(train, "registered_slots", lambda sc, expected: registered)
    spark = _session(master, conf)
    assert train.resolve_workers("auto", spark, device) == workers
    assert train.resolve_workers(1, spark, device) == 1
    with pytest.raises(ConfigError, match=rf"num_workers: {workers + 1} workers need {workers + 1} task slots at "
                                          rf"once .* has {workers};"):
        train.resolve_workers(workers + 1, spark, device)  # refused, not capped: the run asked for more


@pytest.mark.parametrize("conf,device,message", [
    ({"spark.dynamicAllocation.enabled": "true"}, "cpu", "spark.dynamicAllocation.enabled is true"),
    ({}, "cuda", "params train.device: cuda on a cluster needs GPUs on the executors; "
                 "spark.executor.resource.gpu.amount is not set"),
])
def test_a_cluster_that_a_distributed_fit_cannot_use_is_refused_before_any_work(conf, device, message, monkeypatch):
    monkeypatch.setattr(train, "registered_slots", lambda sc, expected: pytest.fail("counted the slots"))
    with pytest.raises(ConfigError, match=message):
        train.resolve_workers("auto", _session(CLUSTER, conf), device)
    train.check_cluster(_session("local[2]", conf), device)  # one machine: nothing to refuse


def test_a_cluster_without_executors_is_refused_naming_the_master(monkeypatch):
    monkeypatch.setattr(train, "registered_slots", lambda sc, expected: (0, 0))
    with pytest.raises(ConfigError, match="the Spark application on spark://h:7077 has no task slot"):
        train.resolve_workers(2, _session(CLUSTER, {}), "cpu")


@pytest.mark.parametrize("conf,expected", [
    ({"spark.cores.max": "4"}, 4), ({"spark.cores.max": "4", "spark.task.cpus": "2"}, 2),
    ({"spark.executor.instances": "3", "spark.executor.cores": "8", "spark.task.cpus": "2"}, 12), ({}, None),
])
def test_the_slots_a_cluster_conf_asks_for(conf, expected):
    assert train.expected_slots(SimpleNamespace(get=conf.get)) == expected
