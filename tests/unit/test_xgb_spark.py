"""The spark engine's changes to xgboost.spark (jobs.common.xgb_spark): how each worker turns its Arrow
batches into matrices, the fit without a training-set evaluation, and the assumptions about the pinned
xgboost that they rest on (each test of those fails when an upgrade breaks it: drop or recheck the change)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.common import xgb_spark
from jobs.common.xgb_spark import DATA, LABEL, VALID, WEIGHT



def _batch(rows: range, valid: bool) -> pd.DataFrame:
    return pd.DataFrame({"a": [float(i) for i in rows], "b": [2.0 * i for i in rows], LABEL: [i % 2 for i in rows],
                         WEIGHT: 1.0, VALID: valid})


def test_batches_of_only_train_or_only_valid_rows_split_without_empty_slices():
    batches = [_batch(range(0, 4), False), _batch(range(4, 6), True),
               pd.concat([_batch(range(6, 8), False), _batch(range(8, 9), True)])]
    parts = xgb_spark.split_batches(iter(batches), ["a", "b"], has_valid=True)
    train, valid = parts[False], parts[True]
    assert [len(x) for x in train[DATA]] == [4, 2] and [len(x) for x in valid[DATA]] == [2, 1]
    assert all(x.dtype == np.float32 and x.shape[1] == 2 for x in train[DATA] + valid[DATA])
    assert np.concatenate(train[DATA])[:, 0].tolist() == [0, 1, 2, 3, 6, 7]
    assert np.concatenate(valid[LABEL]).tolist() == [0, 1, 0]  # labels stay aligned with their rows


def test_a_worker_without_validation_rows_gets_an_empty_matrix_of_the_right_width():
    parts = xgb_spark.split_batches(iter([_batch(range(10), False)]), ["a", "b"], has_valid=True)
    dtrain = xgb_spark.build_matrix(parts[False], 2, True, {"missing": np.nan})
    dvalid = xgb_spark.build_matrix(parts[True], 2, True, {"missing": np.nan}, ref=dtrain)
    assert (dtrain.num_row(), dtrain.num_col()) == (10, 2) and (dvalid.num_row(), dvalid.num_col()) == (0, 2)
    plain = xgb_spark.build_matrix(parts[False], 2, False, {"missing": np.nan})  # the DMatrix path (GPU without cuDF)
    assert (plain.num_row(), plain.num_col()) == (10, 2) and plain.get_label().tolist() == [i % 2 for i in range(10)]


def test_a_fit_whose_validation_rows_all_sit_on_one_worker_reports_their_exact_auc(spark):
    """Two partitions in id order put every validation row on the second worker: the first trains with an
    empty validation matrix, and the validation AUC the fit reports is the AUC of those rows."""
    from sklearn.metrics import roc_auc_score
    df = (spark.range(0, 8000, 1, 2).withColumn("x", F.rand(3)).withColumn("z", F.rand(4))
          .withColumn("label", (F.rand(5) < F.col("x")).cast("double")).withColumn("weight", F.lit(1.0))
          .withColumn("is_valid", F.col("id") >= 7600))
    per_partition = df.groupBy(F.spark_partition_id().alias("p")).agg(F.count_if("is_valid").alias("n")).collect()
    assert sorted(r["n"] for r in per_partition) == [0, 400]  # the library keeps partitions that match the workers
    model = xgb_spark.fit_estimator(df, features_col=["x", "z"], label_col="label", weight_col="weight",
                                 validation_indicator_col="is_valid", num_workers=2, n_estimators=5, max_depth=2,
                                 eval_metric="auc", random_state=1)
    booster = model.get_booster()
    valid = df.where("is_valid").toPandas()
    import xgboost as xgb
    expected = roc_auc_score(valid["label"], booster.predict(xgb.DMatrix(valid[["x", "z"]])))
    reported = model.training_summary.validation_objective_history["auc"][-1]
    assert booster.num_boosted_rounds() == 5 and reported == pytest.approx(expected, abs=1e-6)
    assert not model.training_summary.train_objective_history  # the training set was not evaluated


# What the substitutions rest on, for the pinned xgboost. Each fails when an upgrade changes it.

def test_the_pinned_xgboost_is_one_the_substitutions_were_checked_against():
    import re
    import xgboost
    from tests.conftest import REPO
    pinned = re.search(r"^xgboost==(\S+)$", (REPO / "requirements.lock").read_text(), re.M).group(1)
    assert xgboost.__version__ == pinned and xgb_spark.substitutions_apply(pinned)
    assert not xgb_spark.substitutions_apply("3.3.0") and not xgb_spark.substitutions_apply("4.0.1")


def test_another_xgboost_fits_with_the_library_as_is(spark, monkeypatch, capsys):
    import xgboost
    import xgboost.spark.core as core
    seen = []
    real = core.create_dmatrix_from_partitions
    monkeypatch.setattr(xgboost, "__version__", "9.9.0")
    monkeypatch.setattr(xgb_spark, "_swapped", lambda *a, **k: seen.append(k) or pytest.fail("swapped"))
    df = (spark.range(0, 400, 1, 1).withColumn("x", F.rand(1)).withColumn("label", (F.col("x") > 0.5).cast("double"))
          .withColumn("is_valid", F.col("id") % 4 == 0))  # one partition, each batch mixes both kinds of rows
    model = xgb_spark.fit_estimator(df, features_col=["x"], label_col="label", validation_indicator_col="is_valid",
                                 num_workers=1, n_estimators=3)
    assert model.get_booster().num_boosted_rounds() == 3 and not seen and core.create_dmatrix_from_partitions is real
    assert "xgboost 9.9.0 is not one the xgboost.spark substitutions were checked against" in capsys.readouterr().out
    assert model.training_summary.train_objective_history  # the library's own fit evaluates the training set


def test_the_library_still_crashes_on_a_batch_without_validation_rows():
    """Why ``dmatrices_from_batches`` exists: remove it once the library builds these matrices itself."""
    from xgboost.spark.data import create_dmatrix_from_partitions
    batches = [_batch(range(0, 6), False), _batch(range(6, 9), True)]
    with pytest.raises(KeyError, match=DATA):
        create_dmatrix_from_partitions(iterator=iter(batches), feature_cols=["a", "b"], dev_ordinal=None, use_qdm=True,
                                       kwargs={"missing": np.nan}, enable_sparse_data_optim=False,
                                       has_validation_col=True)


def test_the_replacements_take_the_library_functions_arguments_and_are_what_its_closure_calls():
    import inspect
    import xgboost.spark.core as core
    from xgboost.spark import data
    assert inspect.signature(xgb_spark.dmatrices_from_batches).parameters.keys() == \
        inspect.signature(data.create_dmatrix_from_partitions).parameters.keys()
    fit = inspect.getsource(core._SparkXGBEstimator._fit)
    assert "create_dmatrix_from_partitions(" in fit and "worker_train(" in fit  # resolved as module globals
    assert core.create_dmatrix_from_partitions is data.create_dmatrix_from_partitions
    assert '(dtrain, "training")' in fit  # the training-set evaluation that train_without_training_eval drops
