"""The local training engine (jobs.common.xgb_local): the rows it reads from a Delta snapshot's files are
the Spark frame's, and it falls back to Spark where the files alone are not the frame."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs import model, train
from jobs.common import xgb_local
from jobs.common.errors import ConfigError
from tests.helpers import small_training_set


@pytest.mark.parametrize("engine,master,expected", [
    ("auto", "local[*]", "local"), ("auto", "local[2]", "local"), ("auto", "local", "local"),
    ("auto", "spark://127.0.0.1:7077", "spark"), (None, "spark://h:7077", "spark"),
    ("spark", "local[2]", "spark"), ("local", "spark://h:7077", "local"),
])
def test_auto_engine_is_local_on_a_local_master_and_spark_on_a_cluster(engine, master, expected):
    assert train.resolve_engine(engine, master) == expected


def test_an_unknown_engine_is_refused_by_name():
    with pytest.raises(ConfigError, match="train.engine: 'gpu' is not one of"):
        train.resolve_engine("gpu", "local[2]")


def test_the_local_engine_reads_the_snapshots_files_with_the_frames_rows(spark, cards, tmp_path):
    path = str(tmp_path / "ts")
    df = train.training_frame(small_training_set(spark, cards, path), cards)
    files = xgb_local.snapshot_files(spark, df, path)
    assert files and all("cutoff_ds=2026-10-02" in f for f in files)  # partition-pruned as Spark prunes
    data, how = xgb_local.read_rows(spark, df, path, train.training_rows(cards))
    assert "Parquet file(s) of the snapshot" in how
    by_spark = df.toPandas().sort_values("txn_id", ignore_index=True)
    by_arrow = data.to_pandas().sort_values("txn_id", ignore_index=True)
    assert len(by_spark) == sum(1 for i in range(1, 600, 2) if i % 6 in (1, 3) and i % 97 != 0)  # train, valid, labelled
    pd.testing.assert_frame_equal(by_arrow[by_spark.columns], by_spark)  # same rows, same values, same dtypes


def test_the_class_counts_of_the_local_rows_are_sparks(spark, cards, tmp_path):
    """train's local engine counts the classes on the rows it read (``class_balance_rows``), not in a Spark
    pass: the same counts for every task, zero-weight rows left out as Spark leaves them out."""
    path = str(tmp_path / "ts")
    df = train.training_frame(small_training_set(spark, cards, path), cards)
    df = df.withColumn("weight", F.when(F.col("txn_id").endswith("7"), F.lit(0.0)).otherwise(F.col("weight")))
    data = df.toArrow()
    binary = train.class_balance_rows(data, "is_fraud")
    assert binary == train.class_balance(df, "is_fraud") and binary["train_pos"] and binary["valid_neg"]
    assert sum(binary.values()) < data.num_rows  # the zero-weight rows are not counted
    assert train.class_balance_rows(data, "is_fraud", "regression") == train.class_balance(df, "is_fraud", "regression")
    assert (train.class_balance_rows(data, "is_fraud", "multiclass", ("no", "yes"))
            == train.class_balance(df, "is_fraud", "multiclass", ("no", "yes")))


def test_a_table_with_deletion_vectors_is_read_through_spark(spark, tmp_path):
    path = str(tmp_path / "d")
    (spark.range(0, 1000, 1, 2).withColumn("x", F.rand(1)).write.format("delta")
     .option("delta.enableDeletionVectors", "true").save(path))
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id % 10 = 0")
    df = spark.read.format("delta").load(path)
    assert xgb_local.snapshot_files(spark, df, path) is None  # the files still hold the deleted rows
    data, how = xgb_local.read_rows(spark, df, path, xgb_local.FileRows.identity(["id", "x"]))
    ids = data.column("id").to_numpy()
    assert how == "Spark (toArrow)" and len(ids) == 900 and not (ids % 10 == 0).any()


def test_a_local_fit_is_reproducible_and_keeps_the_model_contract(spark, cards, tmp_path):
    path = str(tmp_path / "ts")
    df = train.training_frame(small_training_set(spark, cards, path), cards)
    params = train.xgb_params({"n_estimators": 20, "early_stopping_rounds": 5, "seed": 3, "subsample": 0.8},
                              train.class_balance(df, "is_fraud"))
    models = [train.fit_local(spark, df, path, cards, params) for _ in range(2)]
    x = df.toPandas()
    import xgboost as xgb
    dm = xgb.DMatrix(x[cards.features.names].astype("float32"), feature_types=model.feature_types(cards),
                     enable_categorical=True, missing=np.nan)
    np.testing.assert_array_equal(*[m.get_booster().predict(dm) for m in models])
    saved, booster = model.save_booster(models[0], cards, tmp_path / "model")
    loaded = xgb.Booster(model_file=str(saved))
    assert saved.suffix == ".ubj" and loaded.feature_names == cards.features.names
    assert loaded.feature_types == model.feature_types(cards) and "c" in loaded.feature_types
    assert train.trained_on(booster) == "cpu"


def test_both_engines_fit_the_train_params_of_a_binary_and_a_regression_task(spark, cards, tmp_path):
    """The params train gives both engines (``xgb_params``, with the task's objective and metric) are ones
    each estimator takes: xgboost.spark's classifier refuses a set objective, its regressor takes one."""
    import dataclasses
    path = str(tmp_path / "ts")
    df = train.training_frame(small_training_set(spark, cards, path), cards)
    base = {"n_estimators": 5, "early_stopping_rounds": 3, "seed": 3}
    binary = train.xgb_params(base, train.class_balance(df, "is_fraud"))
    assert binary["objective"] == "binary:logistic" and binary["eval_metric"] == "aucpr"
    for fit in (lambda p, spec: train.fit(df, spec, p, 1), lambda p, spec: train.fit_local(spark, df, path, spec, p)):
        assert fit(binary, cards).get_booster().num_boosted_rounds() >= 1
    regression = dataclasses.replace(cards, task="regression")
    reg = train.xgb_params(base, train.class_balance(df, "is_fraud", "regression"), "regression")
    assert reg["objective"] == "reg:squarederror" and reg["eval_metric"] == "rmse" and "scale_pos_weight" not in reg
    for fit in (lambda p, spec: train.fit(df, spec, p, 1), lambda p, spec: train.fit_local(spark, df, path, spec, p)):
        booster = fit(reg, regression).get_booster()
        assert json.loads(booster.save_config())["learner"]["objective"]["name"] == "reg:squarederror"


def test_the_files_are_those_of_the_pinned_version(spark, tmp_path):
    path = str(tmp_path / "v")
    spark.range(0, 10).withColumn("x", F.lit(0.0)).write.format("delta").save(path)
    spark.range(100, 105).withColumn("x", F.lit(1.0)).write.format("delta").mode("overwrite").save(path)
    rows = xgb_local.FileRows.identity(["id", "x"])
    for version, expected in ((0, list(range(10))), (1, list(range(100, 105)))):
        df = spark.read.format("delta").option("versionAsOf", version).load(path)
        data, how = xgb_local.read_rows(spark, df, path, rows)
        assert "of the snapshot" in how and sorted(data.column("id").to_pylist()) == expected
