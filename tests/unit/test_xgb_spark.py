"""The input path of distributed training (jobs.common.xgb_spark): how rows reach the workers, and how each
worker turns its Arrow batches into matrices."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.common import xgb_spark
from jobs.common.xgb_spark import DATA, LABEL, VALID, WEIGHT

ARROW_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
SPLIT_CONFS = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.minPartitionNum", "spark.sql.adaptive.enabled")


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


def _confs(spark) -> dict:
    return {k: spark.conf.get(k, None) for k in SPLIT_CONFS}


def _shuffles(df) -> bool:
    return "Exchange" in df._jdf.queryExecution().executedPlan().toString()


def test_files_that_split_evenly_are_read_by_the_workers_without_a_shuffle(spark, tmp_path):
    path = str(tmp_path / "even")
    (spark.range(0, 4000, 1, 4).withColumn("x", F.rand(1)).withColumn("is_valid", F.col("id") >= 3800)
     .write.parquet(path))  # four files, one per range of ids: the valid rows sit in the last one
    df = spark.read.parquet(path)
    before = _confs(spark)
    with xgb_spark.worker_input(df, 2, "is_valid") as parts:
        assert parts.rdd.getNumPartitions() == 2 and not _shuffles(parts)
        per = parts.groupBy(F.spark_partition_id()).count().collect()
        assert sorted(r["count"] for r in per) == [2000, 2000]
    assert _confs(spark) == before  # the split size was set for the fit only


def test_a_file_that_cannot_split_evenly_is_shuffled_round_robin(spark, tmp_path):
    path = str(tmp_path / "one")
    spark.range(0, 3000, 1, 1).withColumn("is_valid", F.lit(False)).write.parquet(path)  # one row group
    before = _confs(spark)
    with xgb_spark.worker_input(spark.read.parquet(path), 2, "is_valid") as parts:
        assert parts.rdd.getNumPartitions() == 2 and _shuffles(parts)
        assert spark.conf.get("spark.sql.adaptive.enabled") == "false"  # else getNumPartitions runs the shuffle
        per = parts.groupBy(F.spark_partition_id()).count().collect()
        assert sorted(r["count"] for r in per) == [1500, 1500]
    assert _confs(spark) == before


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cached_frame_with_the_right_partitions_is_taken_as_is(spark, workers):
    df = spark.range(0, 100, 1, workers).withColumn("is_valid", F.lit(False)).cache()
    with xgb_spark.worker_input(df, workers, "is_valid") as parts:
        assert parts.rdd.getNumPartitions() == workers and not _shuffles(parts)
    df.unpersist()


def test_a_fit_whose_validation_rows_all_sit_on_one_worker_reports_their_exact_auc(spark, tmp_path):
    """Files in time order put every validation row on the last worker: the other one trains with an empty
    validation matrix, and the validation AUC the fit reports is the AUC of those rows."""
    from sklearn.metrics import roc_auc_score
    path = str(tmp_path / "timed")
    (spark.range(0, 8000, 1, 4).withColumn("x", F.rand(3)).withColumn("z", F.rand(4))
     .withColumn("label", (F.rand(5) < F.col("x")).cast("double")).withColumn("weight", F.lit(1.0))
     .withColumn("is_valid", F.col("id") >= 7600).write.parquet(path))
    df = spark.read.parquet(path)
    before = spark.conf.get(ARROW_BYTES)
    with xgb_spark.worker_input(df, 2, "is_valid") as parts:
        assert not _shuffles(parts)
        model = xgb_spark.fit_binary(parts, features_col=["x", "z"], label_col="label", weight_col="weight",
                                     validation_indicator_col="is_valid", num_workers=2, n_estimators=5, max_depth=2,
                                     eval_metric="auc", random_state=1)
    booster = model.get_booster()
    valid = df.where("is_valid").toPandas()
    import xgboost as xgb
    expected = roc_auc_score(valid["label"], booster.predict(xgb.DMatrix(valid[["x", "z"]])))
    reported = model.training_summary.validation_objective_history["auc"][-1]
    assert booster.num_boosted_rounds() == 5 and reported == pytest.approx(expected, abs=1e-6)
    assert not model.training_summary.train_objective_history  # the training set was not evaluated
    assert spark.conf.get(ARROW_BYTES) == before  # lifted for the fit only
    assert spark.conf.get(xgb_spark.SIMPLIFIED_TRACEBACK) == "true"  # likewise


def _daemon(batches):
    import os
    for _ in batches:
        yield pd.DataFrame({"daemon": [os.getppid()]})


def test_the_fits_two_python_workers_fork_from_one_daemon(spark):
    """xgboost.spark's shape of job (a pandas UDF, then an RDD map over its output in the same task) runs two
    Python workers; under ``one_daemon_conf`` they have the same parent."""
    def daemons() -> set[int]:
        import os
        rows = (spark.range(0, 10, 1, 1).mapInPandas(_daemon, "daemon long").rdd.barrier()
                .mapPartitions(lambda it: [(r["daemon"], os.getppid()) for r in it]).collect())
        return set(rows[0])

    assert len(daemons()) == 2
    with xgb_spark._session_conf(spark, xgb_spark.one_daemon_conf()):
        assert len(daemons()) == 1


def test_the_arrow_byte_limit_is_lifted_only_where_it_cannot_cut_a_batch(spark):
    import pyarrow as pa
    df = spark.range(0, 25_000, 1, 1).select(F.col("id").cast("float").alias("x"),
                                            (F.col("id") % 2).cast("double").alias("y"),
                                            (F.col("id") > 9).alias("v"), F.col("id").cast("string").alias("s"))
    lifted = xgb_spark.arrow_batch_conf(df.select("x", "y", "v"))
    assert lifted == {ARROW_BYTES: xgb_spark.ARROW_NO_BYTE_LIMIT}
    assert xgb_spark.arrow_batch_conf(df.select("x", "s")) == {}  # a string has no fixed width
    with xgb_spark._session_conf(spark, {ARROW_BYTES: "64k"}):  # 10k rows of x, y, v pass 64 KiB: it can cut
        assert xgb_spark.arrow_batch_conf(df.select("x", "y", "v")) == {}

    def rows_per_batch(batches):
        for batch in batches:
            yield pa.RecordBatch.from_pydict({"n": [batch.num_rows]})

    def batches() -> list[int]:
        return [r["n"] for r in df.select("x", "y", "v").mapInArrow(rows_per_batch, "n long").collect()]

    as_is = batches()
    with xgb_spark._session_conf(spark, lifted):
        assert batches() == as_is == [10_000, 10_000, 5_000]  # the same batches, without the per-row size check


@pytest.mark.parametrize("tasks", [1, 2])
def test_a_barrier_of_one_task_is_met_at_once_and_larger_ones_still_go_through_spark(spark, tasks):
    """The fast path is installed in the worker when the function is unpickled, before it runs; with one task
    ``barrier()`` and ``allGather()`` never reach Spark (whose barrier RPC polls once a second)."""
    def probe(_):
        from pyspark import taskcontext
        real, sent = taskcontext._load_from_socket, []
        taskcontext._load_from_socket = lambda *args: (sent.append(args[2]), real(*args))[1]
        try:
            ctx = taskcontext.BarrierTaskContext.get()
            ctx.barrier()
            gathered = ctx.allGather(f"task {ctx.partitionId()}")
        finally:
            taskcontext._load_from_socket = real
        yield gathered, len(sent)

    fn = xgb_spark._InstallsOneTaskBarrier(probe)
    out = spark.sparkContext.parallelize(range(tasks), tasks).barrier().mapPartitions(fn).collect()
    assert out == [([f"task {i}" for i in range(tasks)], 0 if tasks == 1 else 2)] * tasks
