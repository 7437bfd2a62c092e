"""Training is resumable and reproducible: a train task killed mid-way resumes from its last checkpoint on
retry and ends with the configured number of rounds; the same data, params and seed give the same model."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from jobs import model, train
from tests.conftest import REPO, write_conf
from tests.helpers import write_training_set

DS = dt.date(2026, 10, 30)


@pytest.fixture(scope="module")
def trainset(spark, tmp_path_factory, cards):
    root = tmp_path_factory.mktemp("resume")
    conf = write_conf(root)
    write_training_set(spark, cards, 120_000, str(root / "lake" / "cards" / "training_set"), DS)
    return root, conf


def test_killed_training_resumes_from_its_checkpoint(trainset):
    root, conf = trainset
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(n_estimators=300, max_depth=8, learning_rate=0.05, early_stopping_rounds=0, checkpoint_every=20)
    ppath = root / "params.yaml"
    ppath.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "jobs.train", "--ds", DS.isoformat(), "--conf", str(conf), "--params", str(ppath)]
    ckpts = root / "runs" / "cards" / f"ds={DS}" / "model" / "checkpoints"
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not list(ckpts.glob("ckpt-00004*.ubj")):
        time.sleep(0.05)
    assert first.poll() is None, "training finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers, mid-training
    first.wait()
    done_before = max(int(p.stem.split("-")[1]) for p in ckpts.glob("ckpt-*.ubj"))
    assert 40 <= done_before < 300
    retry = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert "train: resuming from ckpt-" in retry.stdout
    assert re.search(r"train: local engine, \d+ rows from \d+ Parquet file\(s\) of the snapshot", retry.stdout)
    doc = json.loads((root / "runs" / "cards" / f"ds={DS}" / "model" / "train.json").read_text())
    assert doc["num_boosted_rounds"] == 300 and doc["resumed_from_round"] >= done_before
    assert doc["engine"] == "local" and doc["num_workers"] == 1  # auto on a local master
    assert doc["trained_on"] == "cpu"  # xgboost's own record of the device, from the worker's booster config
    assert not ckpts.exists()  # checkpoints go once the model is saved


@pytest.mark.parametrize("workers", [1, 2])  # the spark engine; tests/unit/test_xgb_local.py: the local one
def test_same_data_params_and_seed_give_the_same_model(spark, trainset, cards, workers):
    root, _ = trainset
    ts = spark.read.format("delta").load(str(root / "lake" / "cards" / "training_set"))
    df = train.training_frame(ts, cards)
    params = train.xgb_params({"n_estimators": 40, "early_stopping_rounds": 10, "seed": 7, "subsample": 0.8},
                              train.class_balance(df, "is_fraud"))
    holdout = ts.where("split = 'holdout'").toPandas()
    preds = []
    for _ in range(3):
        booster = train.fit(df, cards, params, workers).get_booster()
        import xgboost as xgb
        x = xgb.DMatrix(holdout[cards.features.names], feature_types=model.feature_types(cards), enable_categorical=True)
        preds.append(booster.predict(x))
    from sklearn.metrics import roc_auc_score
    aucs = [roc_auc_score(holdout["is_fraud"], p) for p in preds]
    assert max(aucs) - min(aucs) <= 0.002
    assert np.array_equal(preds[0], preds[1]) and np.array_equal(preds[1], preds[2])


def _finished_trials(db) -> int:
    import sqlite3
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_interrupted_tuning_resumes_its_study_and_train_uses_the_best_params(trainset, spark):
    root, conf = trainset
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tune"].update(n_trials=30, max_train_rows=20_000, max_valid_rows=10_000, max_rounds=60,
                          early_stopping_rounds=10, pruning_warmup_rounds=5)
    params["train"].update(n_estimators=30, checkpoint_every=0)
    ppath = root / "params-tune.yaml"
    ppath.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "jobs.tune", "--ds", DS.isoformat(), "--conf", str(conf), "--params", str(ppath),
           "--set", "tune.enabled=true"]
    db = root / "runs" / "cards" / "tune.db"
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and _finished_trials(db) < 3:
        time.sleep(0.05)
    assert first.poll() is None, "the search finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = _finished_trials(db)
    assert 3 <= before < 30
    retry = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert retry.returncode == 0, retry.stderr[-3000:]
    doc = json.loads((root / "runs" / "cards" / f"ds={DS}" / "tune" / "best_params.json").read_text())
    assert doc["trials"]["finished_before_this_run"] == before
    assert doc["trials"]["complete"] + doc["trials"]["pruned"] == 30  # the study's total, not 30 more
    assert doc["trials"]["pruned"] >= 1  # the median pruner stopped bad trials early
    assert set(doc["best_params"]) == set(params["tune"]["space"])
    train.main(["--ds", DS.isoformat(), "--conf", str(conf), "--params", str(ppath)])
    model = json.loads((root / "runs" / "cards" / f"ds={DS}" / "model" / "train.json").read_text())
    assert model["tuned"] == doc["best_params"]
    assert model["params"]["max_depth"] == doc["best_params"]["max_depth"]


def test_the_local_and_the_spark_engine_train_models_of_the_same_holdout_auc(spark, trainset, cards, tmp_path):
    """Same training set, same params (params.yaml's train section): plain XGBoost in this process against
    SparkXGBClassifier with two workers (rows streamed by Spark, histograms allreduced); both saved as the
    train step saves them."""
    root, _ = trainset
    path = str(root / "lake" / "cards" / "training_set")
    ts = spark.read.format("delta").load(path)
    df = train.training_frame(ts.where(f"cutoff_ds = DATE'{DS}'"), cards)
    p = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    params = train.xgb_params({**p, "n_estimators": 150}, train.class_balance(df, "is_fraud"))
    local = train.fit_local(spark, df, path, cards, params)
    distributed = train.fit(df, cards, params, 2)
    holdout = ts.where("split = 'holdout'").toPandas()
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score
    aucs = {}
    for name, fitted in (("local", local), ("spark", distributed)):
        saved, _ = model.save_booster(fitted, cards, tmp_path / name)
        booster = xgb.Booster(model_file=str(saved))
        assert booster.feature_names == cards.features.names and booster.feature_types == model.feature_types(cards)
        x = xgb.DMatrix(holdout[cards.features.names], feature_types=model.feature_types(cards), enable_categorical=True)
        aucs[name] = roc_auc_score(holdout["is_fraud"], booster.predict(x))
    assert aucs["local"] > 0.75 and abs(aucs["local"] - aucs["spark"]) <= 0.005, aucs
