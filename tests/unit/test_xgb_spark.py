"""The input path of distributed training (jobs.common.xgb_spark): how rows reach the workers, and how each
worker turns its Arrow batches into matrices."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.common import xgb_spark
from jobs.common.xgb_spark import DATA, LABEL, VALID, WEIGHT
from tests.helpers import small_training_set

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


def _pid(batches):
    import os
    from pyspark import BarrierTaskContext
    for _ in batches:
        yield pd.DataFrame({"pid": [os.getpid()], "tasks": [len(BarrierTaskContext.get().getTaskInfos())]})


def test_the_training_stage_is_one_barrier_map_with_one_python_worker_per_task(spark):
    """xgboost.spark's chain (``mapInPandas(f).rdd.barrier().mapPartitions(identity)``, collected) runs ``f``
    in a barrier stage with one Python worker per task; the library's own chain runs a second worker per
    task for the identity map."""
    import os
    df = spark.range(0, 40, 1, 2)
    rows = xgb_spark._OneStageInput(df).mapInPandas(_pid, "pid long, tasks int").rdd.barrier() \
        .mapPartitions(lambda x: x).collect()
    assert [r["tasks"] for r in rows] == [2, 2]  # a barrier stage of two tasks: BarrierTaskContext in each
    library = df.mapInPandas(_pid, "pid long, tasks int").rdd.barrier() \
        .mapPartitions(lambda it: [(r["pid"], os.getpid()) for r in it]).collect()
    assert all(udf != mapper for udf, mapper in library)  # what it saves: the identity map's own process
    assert xgb_spark._OneStageInput(df).count() == 40  # everything else is the frame's own
    with pytest.raises(NotImplementedError, match="not the identity"):
        xgb_spark._OneStageInput(df).mapInPandas(_pid, "pid long, tasks int").rdd.mapPartitions(lambda it: [])


def test_the_lean_worker_imports_xgboost_spark_without_scikit_learn():
    """What ``common.lean_worker`` sets up before pyspark's worker runs: the training side of xgboost.spark
    imports and trains; scikit-learn is not loaded."""
    import subprocess
    import sys
    code = ("import sys\nfrom jobs.common.lean_worker import lean_imports\nlean_imports()\n"
            "import numpy as np, xgboost as xgb, xgboost.spark.core, xgboost.spark.data\n"
            "from jobs.common import xgb_spark\n"
            "parts = {xgb_spark.DATA: [np.arange(20, dtype='float32').reshape(10, 2)], "
            "xgb_spark.LABEL: [np.arange(10) % 2]}\n"
            "d = xgb_spark.build_matrix(parts, 2, True, {})\n"
            "b = xgb_spark.train_without_training_eval({'max_depth': 2}, d, 3, evals=[(d, 'training')])\n"
            "assert b.num_boosted_rounds() == 3\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn' and sys.modules[m]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


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


def test_the_worker_reads_the_training_sets_files_itself_with_the_same_rows(spark, cards, tmp_path):
    from jobs import train
    df = train.training_frame(small_training_set(spark, cards, str(tmp_path / "ts")), cards)
    with xgb_spark.worker_input(df, 1, train.VALID_COL) as parts:
        direct = xgb_spark.direct_input(parts, train.training_rows(cards), 1)
        assert direct is not None and direct.files
        assert all("cutoff_ds=2026-10-02" in f for f in direct.files)  # partition-pruned as Spark prunes
        by_spark = parts.toPandas().sort_values("txn_id", ignore_index=True)
    by_arrow = pd.concat(xgb_spark.read_batches(direct, direct.rows.columns, 64)).sort_values("txn_id", ignore_index=True)
    assert len(by_spark) == sum(1 for i in range(1, 600, 2) if i % 6 in (1, 3) and i % 97 != 0)  # train, valid, labelled
    pd.testing.assert_frame_equal(by_arrow[by_spark.columns], by_spark)  # same rows, same values, same dtypes
    assert set(by_spark[train.VALID_COL]) == {False, True} and by_spark["weight"].notna().all()


def test_the_direct_read_is_refused_where_spark_must_stream(spark, tmp_path):
    path = str(tmp_path / "p")
    spark.range(0, 100, 1, 2).withColumn("x", F.rand(1)).write.parquet(path)
    df = spark.read.parquet(path)
    rows = xgb_spark.FileRows.identity(["id", "x"])
    assert xgb_spark.direct_input(df, rows, 1) is not None
    assert xgb_spark.direct_input(df, rows, 2) is None  # one worker only: several read Spark's splits
    assert xgb_spark.direct_input(df.join(df.select("id"), "id"), rows, 1) is None  # not a lone scan
    assert xgb_spark.direct_input(spark.range(10), xgb_spark.FileRows.identity(["id"]), 1) is None  # no files
    assert xgb_spark.direct_input(df, xgb_spark.FileRows.identity(["id", "y"]), 1) is None  # a column they lack
    cached = spark.read.parquet(path).cache()
    cached.count()
    assert xgb_spark.direct_input(cached.select("*"), rows, 1) is None  # planned afresh, as worker_input does
    cached.unpersist()


@pytest.mark.parametrize("deletion_vectors", [True, False])
def test_rows_deleted_from_a_delta_table_are_never_read_back(spark, tmp_path, deletion_vectors):
    path = str(tmp_path / "d")
    (spark.range(0, 1000, 1, 2).withColumn("x", F.rand(1)).write.format("delta")
     .option("delta.enableDeletionVectors", str(deletion_vectors).lower()).save(path))
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id % 10 = 0")
    df = spark.read.format("delta").load(path).select("*")
    direct = xgb_spark.direct_input(df, xgb_spark.FileRows.identity(["id", "x"]), 1)
    if deletion_vectors:  # the files still hold the deleted rows; only Spark's scan drops them
        assert direct is None
    else:  # the deleting commit rewrote the files: the snapshot's files hold exactly the table's rows
        ids = pd.concat(xgb_spark.read_batches(direct, direct.rows.columns, 100))["id"]
        assert len(ids) == 900 and not (ids % 10 == 0).any()


def test_a_fit_on_files_the_worker_reads_itself_equals_the_fit_on_streamed_rows(spark, cards, tmp_path, capsys):
    from jobs import train
    df = train.training_frame(small_training_set(spark, cards, str(tmp_path / "ts")), cards)
    params = {"n_estimators": 5, "max_depth": 3, "learning_rate": 0.3, "tree_method": "hist", "eval_metric": "auc",
              "random_state": 1}
    with xgb_spark.worker_input(df, 1, train.VALID_COL) as parts:
        direct = xgb_spark.direct_input(parts, train.training_rows(cards), 1)
        boosters = [train.fit(parts, cards, params, 1, direct=d).get_booster() for d in (direct, None)]
    read_itself = f"the worker reads the {len(direct.files)} input files itself"
    assert capsys.readouterr().out.count(read_itself) == 1  # the first fit only: the second streams
    x = parts.toPandas()
    import xgboost as xgb
    preds = [b.predict(xgb.DMatrix(x[cards.features.names].astype("float32"), missing=np.nan)) for b in boosters]
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-6)
    assert [b.num_boosted_rounds() for b in boosters] == [5, 5]
