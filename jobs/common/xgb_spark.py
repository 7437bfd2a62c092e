"""xgboost.spark's training path without its avoidable costs; what it computes is unchanged.

``worker_input`` hands the fit its rows in one partition per worker, straight from the files when they
split evenly (no shuffle, no cache). ``fit_binary`` then trains a ``SparkXGBClassifier`` exactly as the
library does (one barrier stage, one XGBoost worker per partition, the collective's allreduce) with these
substitutions, each measured at 1M-4M rows (bench/RESULTS.md):

- **No label pass.** The classifier runs ``countDistinct(label)`` over the whole input to choose between
  binary and multi-class objectives. Our labels are declared binary and counted by class before training,
  so the count runs on an empty frame (Spark answers that without a job) and the objective is
  ``binary:logistic`` as before.
- **One float32 copy per Arrow batch, empty slices allowed.** The library keeps every pandas batch of
  the partition (split into train and valid copies) until the QuantileDMatrix is built, and crashes with
  ``KeyError: 'values'`` on a batch that holds only train or only valid rows. Here each batch becomes one
  float32 array at once (the batch is released), rows are split by the indicator, and a worker whose
  partition has no validation rows gets an empty validation matrix of the right width. Arrow batches can
  then come in any order, so the input needs no shuffle and no sort: see ``worker_input``.
- **No training-set evaluation.** xgboost.spark always evaluates the *training* set every round next to
  the validation set; early stopping reads only the last, and for AUC-type metrics that sorts every
  training row every round (a third of the boosting time at 1M rows).
- **No barrier wait in a one-task stage.** Spark's barrier RPC polls for completion once a second (the JVM's
  ``BarrierTaskContext`` sleeps 1 s per check), and each worker calls ``barrier()``, ``allGather()`` and
  ``barrier()`` again: about 3 s per fit even when nobody waits. With a single worker (the default on one
  machine, ``train.training_settings``) there is nobody to wait for, so those calls return at once: a
  barrier of one is met on arrival and the gather of one message is that message. Stages of more tasks go
  through Spark as before. The fast path is installed in the Python worker when the fit's closure is
  unpickled there, before its first barrier (``_InstallsOneTaskBarrier``).

- **One Python worker per task.** The library collects its training stage through a barrier RDD over the
  training function's output, which runs a second Python worker per task only to pass the output rows on;
  here the stage is a barrier ``mapInPandas`` itself (``_BarrierStage``).

- **On one machine, the worker reads the files itself.** Spark's JVM would decode every row of the input,
  write Arrow batches and stream them to the one training worker, which decodes them again; streaming took
  a quarter of the 1M-row fit here and grew the JVM's heap by ~230 MB, which it kept through the boosting.
  Where the input is a lone scan of local Parquet files (a Delta snapshot without deletion vectors
  included) and the caller describes the frame as pyarrow expressions over those files (``FileRows``; the
  train step's ``train.training_rows``), the stage is one task over a placeholder row and its worker reads
  the scan's files with pyarrow into the same batches (``direct_input``, ``read_batches``). Anything else,
  a cluster included, streams through Spark as before.

Around the fit, the per-row byte count that Spark adds to the Arrow batches fed to the workers is turned
off where it cannot cut a batch (``arrow_batch_conf``). On one machine the train step starts that one
worker without a daemon and without scikit-learn (``common.lean_worker``, ``train.training_settings``).

The substitutions reach the workers because xgboost.spark pickles its training closure by value, and the
closure resolves ``create_dmatrix_from_partitions`` and ``worker_train`` from ``xgboost.spark.core`` when it
is pickled; they are swapped in on the driver for the duration of the fit and restored afterwards. Sparse
vectors, the one input this module does not handle, go to the library's own code."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections import defaultdict
from typing import Any, Iterator

from pyspark.sql import functions as F

from jobs.common.xgb_local import FileRows, unified_schema

DATA, LABEL, WEIGHT, MARGIN, VALID, QID = "values", "label", "weight", "baseMargin", "validationIndicator", "qid"


def train_without_training_eval(*args, evals=None, **kwargs):
    """``xgboost.train`` minus the evaluation of the training set that xgboost.spark adds (runs on the workers)."""
    import xgboost
    kept = [e for e in (evals or []) if e[1] != "training"] or evals
    return xgboost.training.train(*args, evals=kept, **kwargs)


def one_task_barrier() -> None:
    """Make ``BarrierTaskContext.barrier`` and ``allGather`` return at once in a barrier stage of one task
    (in this process; idempotent). With more tasks they go through Spark unchanged."""
    from pyspark.taskcontext import BarrierTaskContext
    if getattr(BarrierTaskContext, "_one_task_barrier", False):
        return
    barrier, all_gather = BarrierTaskContext.barrier, BarrierTaskContext.allGather

    def barrier_alone(self) -> None:
        if len(self.getTaskInfos()) != 1:
            barrier(self)

    def all_gather_alone(self, message: str = "") -> list[str]:
        if len(self.getTaskInfos()) != 1 or not isinstance(message, str):
            return all_gather(self, message)
        return [message]

    BarrierTaskContext.barrier, BarrierTaskContext.allGather = barrier_alone, all_gather_alone
    BarrierTaskContext._one_task_barrier = True


def _unpickled_on_worker(fn):
    one_task_barrier()
    return fn


class _InstallsOneTaskBarrier:
    """``fn``, pickled so that loading it (in the Python worker, with the fit's closure, before the closure
    runs) installs ``one_task_barrier`` first; on the driver it is ``fn``."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __reduce__(self):
        return _unpickled_on_worker, (self.fn,)


def split_batches(batches: Iterator[Any], feature_cols: list[str], has_valid: bool) -> dict[bool, dict[str, list]]:
    """{is_valid: {column alias: [numpy arrays, one per non-empty batch slice]}}: features as float32, one
    copy per batch; slices without rows are skipped (the library would crash on them)."""
    import numpy as np
    out: dict[bool, dict[str, list]] = {False: defaultdict(list), True: defaultdict(list)}
    for pdf in batches:
        x = pdf[feature_cols].to_numpy(dtype=np.float32)
        valid = pdf[VALID].to_numpy(dtype=bool) if has_valid else np.zeros(len(pdf), dtype=bool)
        meta = {name: pdf[name].to_numpy() for name in (LABEL, WEIGHT, MARGIN, QID) if name in pdf.columns}
        for flag in (False, True):
            rows = valid if flag else ~valid
            n = int(rows.sum())
            if n == 0:
                continue
            whole = n == len(pdf)
            out[flag][DATA].append(x if whole else x[rows])
            for name, col in meta.items():
                out[flag][name].append(col if whole else col[rows])
    return out


def build_matrix(data: dict[str, list], n_features: int, use_qdm: bool, kwargs: dict[str, Any], ref=None):
    """A QuantileDMatrix (or DMatrix) over the arrays of ``split_batches``, batch by batch without
    concatenating; an empty one of the right width when there are none (every worker must take part in the
    collective's allreduce, with or without rows)."""
    import numpy as np
    import xgboost as xgb
    from xgboost.spark.data import PartIter, concat_or_none
    construct = ("max_bin", "missing", "silent", "nthread", "enable_categorical")
    params = {k: v for k, v in kwargs.items() if k in construct}
    meta = {k: v for k, v in kwargs.items() if k not in construct}
    if not data.get(DATA):
        empty = np.empty((0, n_features), dtype=np.float32)
        return xgb.QuantileDMatrix(empty, ref=ref, **params, **meta) if use_qdm else xgb.DMatrix(empty, **kwargs)
    if use_qdm:
        return xgb.QuantileDMatrix(PartIter(data, None, **meta), ref=ref, **params)
    cat = {name: concat_or_none(data.get(key)) for name, key in
           (("data", DATA), ("label", LABEL), ("weight", WEIGHT), ("base_margin", MARGIN), ("qid", QID))}
    return xgb.DMatrix(**cat, **kwargs)


def dmatrices_from_batches(*, iterator, feature_cols, dev_ordinal, use_qdm, kwargs, enable_sparse_data_optim,
                           has_validation_col):
    """Drop-in for ``xgboost.spark.data.create_dmatrix_from_partitions`` (same keyword arguments, runs on
    the workers). Host arrays also serve a GPU worker: XGBoost copies them to the device."""
    from xgboost.spark import data as library
    if enable_sparse_data_optim or feature_cols is None:
        return library.create_dmatrix_from_partitions(
            iterator=iterator, feature_cols=feature_cols, dev_ordinal=dev_ordinal, use_qdm=use_qdm, kwargs=kwargs,
            enable_sparse_data_optim=enable_sparse_data_optim, has_validation_col=has_validation_col)
    parts = split_batches(iterator, list(feature_cols), has_validation_col)
    dtrain = build_matrix(parts[False], len(feature_cols), use_qdm, kwargs)
    parts[False].clear()
    dvalid = build_matrix(parts[True], len(feature_cols), use_qdm, kwargs, ref=dtrain) if has_validation_col else None
    return dtrain, dvalid


@contextlib.contextmanager
def _swapped(module, **replacements):
    """Set module attributes for the duration; each replacement keeps the original's signature
    (xgboost.spark routes parameters by ``worker_train``'s, via ``inspect.signature`` and ``__wrapped__``)."""
    originals = {name: getattr(module, name) for name in replacements}
    for name, fn in replacements.items():
        fn.__wrapped__ = originals[name]
        setattr(module, name, fn)
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


@contextlib.contextmanager
def _session_conf(spark, conf: dict[str, str]):
    """Set session confs for the duration, then put back what they were (unset if they were unset)."""
    before = {k: spark.conf.get(k, None) for k in conf}
    for k, v in conf.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)


def _scan_bytes(df) -> tuple[int, int] | None:
    """(bytes, files) that ``df``'s one file scan reads after partition pruning, or None when ``df`` is not
    a plain scan (a join, an exchange, a cached or local relation)."""
    from py4j.protocol import Py4JError
    try:  # Spark's physical plan through py4j: another Spark version may name things otherwise
        leaves = df._jdf.queryExecution().executedPlan().collectLeaves()
        if leaves.size() != 1 or "FileSourceScan" not in leaves.apply(0).getClass().getName():
            return None
        listing = leaves.apply(0).selectedPartitions()
        return int(listing.totalFileSize()), int(listing.totalNumberOfFiles())
    except Py4JError as e:
        print(f"train: cannot read the scan's file sizes ({type(e).__name__}); the input will be shuffled")
        return None


def _rows_per_partition(df, where) -> list[int]:
    """Rows matching ``where`` in each partition of ``df``, in one pass that reads only ``where``'s columns."""
    rows = df.groupBy(F.spark_partition_id().alias("p")).agg(F.count_if(where).alias("n")).collect()
    return [r["n"] for r in rows]


SPLIT_SLACK = (1.0, 1.1, 1.25, 1.5)  # how far above bytes/workers a scan split may grow
MAX_IMBALANCE = 1.25                 # most / fewest training rows across workers that is still taken as is


@contextlib.contextmanager
def worker_input(df, num_workers: int, valid_col: str | None = None):
    """``df`` in exactly ``num_workers`` partitions, as xgboost.spark wants (one worker per partition), for
    the duration of the fit; session confs it sets are restored afterwards.

    A shuffle of every row costs more than the boosting at 1M-4M rows, and a barrier stage may not contain a
    ``coalesce``, so the first choice is to have the file scan itself produce the partitions: the split size
    (``spark.sql.files.maxPartitionBytes``, ``minPartitionNum`` 1) is set to the scan's bytes per worker,
    plus some slack, until the scan plans exactly ``num_workers`` partitions, and they are taken when their
    training rows (those not in ``valid_col``; one pass over that column) are within ``MAX_IMBALANCE`` of
    each other: boosting waits for the busiest worker, and a file with one large row group can leave a split
    empty (an empty partition has no row count, so it is never taken). One worker needs no count. At 4M rows
    a 1.25 imbalance costs about what the shuffle does. Batches arrive in file order, train and valid rows
    apart, which the workers take (``dmatrices_from_batches``). Otherwise the rows are shuffled round-robin,
    with adaptive execution off for the fit: with it on, xgboost.spark's ``rdd.getNumPartitions()`` runs the
    shuffle's map stage once more."""
    spark = df.sparkSession
    scan = _scan_bytes(df)
    trained = ~F.col(valid_col) if valid_col else F.lit(True)
    candidates = [{}]
    if scan:
        size, files = scan
        weighed = size + files * spark._jsparkSession.sessionState().conf().filesOpenCostInBytes()  # as Spark packs
        candidates += [{"spark.sql.files.maxPartitionBytes": str(int(weighed / num_workers * s) + 1),
                        "spark.sql.files.minPartitionNum": "1"} for s in SPLIT_SLACK]
    for conf in candidates:
        with _session_conf(spark, conf):
            parts = df.select("*")  # planned afresh under this conf
            if parts.rdd.getNumPartitions() != num_workers:
                continue
            if num_workers == 1:  # one partition holds every row: nothing to balance, nothing to count
                print("train: 1 worker, the scan as one partition")
                yield parts
                return
            rows = _rows_per_partition(parts, trained)
            if len(rows) == num_workers and min(rows) * MAX_IMBALANCE >= max(rows):
                print(f"train: {num_workers} workers take the scan split by files, "
                      f"training rows per worker {sorted(rows)}")
                yield parts
                return
    print(f"train: shuffling the input into {num_workers} partitions (its files do not split evenly into them)")
    with _session_conf(spark, {"spark.sql.adaptive.enabled": "false"}):
        yield df.repartition(num_workers)


@dataclasses.dataclass(frozen=True)
class DirectInput:
    """What one worker reads itself: the local Parquet files of the frame's scan (partition-pruned, whole
    files, in the scan's order), their unified schema and the frame as ``FileRows``."""
    files: tuple[str, ...]
    schema: Any
    rows: FileRows


def _scan_files(df) -> list[str] | None:
    """The local paths of the files that the one-partition file scan of ``df`` reads (each whole, in the
    scan's order), or None (not a lone Parquet scan, not local files, a file read in pieces, deleted rows
    that Delta filters out through a deletion vector)."""
    from py4j.protocol import Py4JError
    try:
        plan = df._jdf.queryExecution().executedPlan()
        leaves = plan.collectLeaves()
        if leaves.size() != 1 or "FileSourceScan" not in leaves.apply(0).getClass().getName():
            return None
        scan = leaves.apply(0)
        if "Parquet" not in scan.relation().fileFormat().getClass().getName() or "is_row_deleted" in plan.toString():
            return None
        partitions = scan.inputRDD().filePartitions()
        covered: dict[str, list] = {}
        for i in range(partitions.size()):
            for f in partitions.apply(i).files():
                uri = f.filePath().toPath().toUri()
                if uri.getScheme() not in (None, "file"):
                    return None
                covered.setdefault(uri.getPath(), []).append((f.start(), f.length(), f.fileSize()))
    except Py4JError as e:
        print(f"train: cannot list the scan's files ({type(e).__name__}); Spark streams the rows")
        return None
    for pieces in covered.values():
        if sum(length for _, length, _ in pieces) != pieces[0][2]:
            return None
    return list(covered)


def direct_input(df, rows: FileRows, num_workers: int) -> DirectInput | None:
    """``df``'s rows for one worker that reads the files itself (pyarrow), or None where Spark must stream
    them: more than one worker, a master that is not local (the worker may not see the driver's files),
    ``df`` not a lone scan of local Parquet files (``_scan_files``), or ``rows`` naming a column the files
    lack under that name (Delta's column mapping, a partition column) or types that do not unify.

    Why: on one machine, Spark's JVM decodes every row, writes Arrow batches and streams them to the
    training worker, which decodes them again; the JVM's heap grows by the stream's buffers and keeps that
    size through the boosting (bench/RESULTS.md). The worker reading the same files with pyarrow gets the
    same rows with neither."""
    import pyarrow as pa
    if num_workers != 1 or not df.sparkSession.sparkContext.master.startswith("local"):
        return None
    files = _scan_files(df)
    if not files:
        return None
    try:
        direct = DirectInput(tuple(files), unified_schema(files), rows)
    except (pa.ArrowException, OSError) as e:  # types that do not unify across the files
        print(f"train: the worker cannot read the files itself ({e}); Spark streams the rows")
        return None
    return direct if _readable(direct, rows.columns) else None


def _readable(direct: DirectInput, columns: dict[str, Any]) -> bool:
    """Whether pyarrow can read ``columns`` from the files: it binds the expressions to the files' schema
    (a column the files lack, as under Delta's column mapping or for a partition column; a cast it has no
    kernel for) without reading any data."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    try:
        pads.dataset(list(direct.files), format="parquet", schema=direct.schema).scanner(
            columns=columns, filter=direct.rows.filter)
    except (pa.ArrowException, ValueError, TypeError) as e:
        print(f"train: the worker cannot read the files itself ({e}); Spark streams the rows")
        return False
    return True


SPARK_TO_ARROW = {"float": "float32", "double": "float64", "boolean": "bool_", "integer": "int32", "long": "int64",
                  "short": "int16", "byte": "int8"}


def _library_columns(clf, prepared, direct: DirectInput) -> dict[str, Any] | None:
    """The frame that xgboost.spark streams (``prepared``: its aliases and casts of the classifier's
    columns) as expressions over the files, or None where a column is not one of the classifier's or
    pyarrow cannot read it so."""
    import pyarrow as pa
    rows = direct.rows
    sources = {LABEL: clf.getOrDefault(clf.labelCol), **{n: n for n in clf.getOrDefault(clf.features_cols) or []}}
    for alias, param in ((WEIGHT, clf.weightCol), (VALID, clf.validationIndicatorCol)):
        if clf._col_is_defined_not_empty(param):  # the library's own test for streaming the column
            sources[alias] = clf.getOrDefault(param)
    out = {}
    for field in prepared.schema.fields:
        source, arrow = sources.get(field.name), SPARK_TO_ARROW.get(field.dataType.typeName())
        if source not in rows.columns or arrow is None:
            return None
        # unchecked, as Spark casts: Arrow's checked cast refuses, e.g., an integer beyond float64's exact range
        out[field.name] = rows.columns[source].cast(getattr(pa, arrow)(), safe=False)
    return out if _readable(direct, out) else None


def read_batches(direct: DirectInput, columns: dict[str, Any], batch_rows: int) -> Iterator[Any]:
    """The rows as pandas batches of at most ``batch_rows`` (runs on the worker), one file at a time, a few
    batches ahead. The memory it holds is a row group or two (bench/RESULTS.md): pyarrow's defaults
    pre-buffer every selected column chunk of a file (the whole 1M-row bench file at once), and its mimalloc
    pool keeps what the decoded row groups freed (~360 MB at 1M rows) until asked to give it back."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    data = pads.dataset(list(direct.files), format="parquet", schema=direct.schema)
    pool = pa.default_memory_pool()
    scan = data.to_batches(columns=columns, filter=direct.rows.filter, batch_size=batch_rows, batch_readahead=4,
                           fragment_readahead=1,
                           fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False))
    for i, batch in enumerate(scan, 1):
        if batch.num_rows:
            yield batch.to_pandas()
        if i % RELEASE_EVERY == 0:
            pool.release_unused()
    pool.release_unused()


RELEASE_EVERY = 16  # batches between returning the Arrow pool's free memory to the system


class _ReadsFiles:
    """The training function of a one-task stage, fed by ``read_batches`` instead of the stage's input."""

    def __init__(self, func, direct: DirectInput, columns: dict[str, Any], batch_rows: int):
        self.func, self.direct, self.columns, self.batch_rows = func, direct, columns, batch_rows

    def __call__(self, stage_input):
        for _ in stage_input:  # the stage's one placeholder row
            pass
        yield from self.func(read_batches(self.direct, self.columns, self.batch_rows))


ARROW_NO_BYTE_LIMIT = str(2**31 - 1)  # Spark's "no byte limit" value: its batcher then skips the size check
FIXED_WIDTH = {"boolean": 1, "byte": 1, "short": 2, "integer": 4, "date": 4, "float": 4, "long": 8, "double": 8,
               "timestamp": 8, "timestamp_ntz": 8}  # Arrow bytes per value of Spark's fixed-width types


def arrow_batch_conf(df) -> dict[str, str]:
    """Session confs for streaming the rows of ``df`` to a pandas UDF: Spark 4 cuts those Arrow batches at
    ``maxRecordsPerBatch`` rows or ``maxBytesPerBatch`` bytes, whichever comes first, and for the byte limit
    it sums the batch's buffer sizes after every row (SPARK-51316), which was a third of the JVM's time when
    streaming 4M rows of 33 columns. When every column has a fixed width and a batch of
    ``maxRecordsPerBatch`` rows stays below the byte limit, the byte limit can never cut a batch; it is then
    lifted, which skips the check, and the batches are the same. Otherwise nothing changes."""
    from py4j.protocol import Py4JError
    try:
        conf = df.sparkSession._jsparkSession.sessionState().conf()
        records, byte_limit = conf.arrowMaxRecordsPerBatch(), conf.arrowMaxBytesPerBatch()
    except Py4JError:
        return {}
    widths = [FIXED_WIDTH.get(field.dataType.typeName()) for field in df.schema.fields]
    if None in widths or records <= 0 or records * sum(w + 1 for w in widths) >= byte_limit:  # + validity
        return {}
    return {"spark.sql.execution.arrow.maxBytesPerBatch": ARROW_NO_BYTE_LIMIT}


def _streamed(clf, parts):
    """What ``clf`` streams of ``parts`` to its workers: the library's own column selection (features cast to
    float, label, weight, indicator...), or all of ``parts`` where that method is missing."""
    select = getattr(clf, "_prepare_input_columns_and_feature_prop", None)
    return parts.select(*select(parts)[0]) if select else parts


class _BarrierStage:
    """The training stage as xgboost.spark's ``_fit`` builds and collects it, as one barrier ``mapInPandas``.

    The library runs ``df.mapInPandas(train).rdd.barrier().mapPartitions(lambda x: x)`` and collects that:
    the barrier RDD turns the training function's output rows into Python objects in a second Python worker
    per task, which only passes them on (a forked interpreter next to the training worker: ~50 MB at 1M
    rows, and with it a worker daemon that the training worker alone does not need). Spark 3.5+ runs
    ``mapInPandas(..., barrier=True)`` as the barrier stage itself (same ``BarrierTaskContext``, same
    output rows in partition order). This object answers the chain the library calls on that frame:
    ``.rdd``, ``.barrier()``, ``.mapPartitions(identity)``, stage-level scheduling's
    ``.withResources(profile)`` (passed to ``mapInPandas`` as its ``profile``) and ``.collect()``."""

    def __init__(self, df, func, schema, profile=None):
        self._source, self._frame = (df, func, schema), df.mapInPandas(func, schema, barrier=True, profile=profile)

    @property
    def rdd(self):
        return self

    def barrier(self):
        return self

    def mapPartitions(self, f, preservesPartitioning=False):  # noqa: N802 (the RDD method's name)
        if list(f(iter((1, 2)))) != [1, 2]:
            raise NotImplementedError("xgboost.spark maps its training output with a function that is not the "
                                      "identity; this xgboost needs its own fit (common.xgb_spark.binary_classifier)")
        return self

    def withResources(self, profile):  # noqa: N802
        return _BarrierStage(*self._source, profile=profile)

    def collect(self):
        return self._frame.collect()


class _OneStageInput:
    """The classifier's prepared input frame, whose ``mapInPandas`` is the ``_BarrierStage``; everything else
    is the frame's own. With ``reads`` (``_ReadsFiles``'s arguments) the stage is one task over a placeholder
    row whose worker reads the files itself."""

    def __init__(self, df, reads: tuple | None = None):
        self._df, self._reads = df, reads

    def __getattr__(self, name):
        return getattr(self._df, name)

    def mapInPandas(self, func, schema):  # noqa: N802
        if self._reads is None:
            return _BarrierStage(self._df, func, schema)
        placeholder = self._df.sparkSession.range(0, 1, 1, 1)  # one task, one row: the worker reads the files
        return _BarrierStage(placeholder, _ReadsFiles(func, *self._reads), schema)


def binary_classifier(direct: DirectInput | None = None, **params):
    """A ``SparkXGBClassifier`` for a label known to be 0/1: the objective is ``binary:logistic`` without the
    library's ``countDistinct`` pass over the labels, and the training stage is one barrier ``mapInPandas``
    (``_BarrierStage``): one Python worker per task. With ``direct`` (``direct_input``) that worker reads
    the input's files itself, unless the classifier streams a column that ``direct.rows`` does not give."""
    from xgboost.spark import SparkXGBClassifier

    class BinarySparkXGBClassifier(SparkXGBClassifier):
        def _get_distributed_train_params(self, dataset):
            return super()._get_distributed_train_params(dataset.limit(0))  # 0 distinct labels -> binary

        def _prepare_input(self, dataset):
            prepared, feature_prop = super()._prepare_input(dataset)
            columns = _library_columns(self, prepared, direct) if direct else None
            if columns is None:
                return _OneStageInput(prepared), feature_prop
            batch_rows = int(dataset.sparkSession.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "10000"))
            print(f"train: the worker reads the {len(direct.files)} input files itself (pyarrow)")
            return _OneStageInput(prepared, (direct, columns, batch_rows)), feature_prop

    return BinarySparkXGBClassifier(**params)


def fit_binary(parts, direct: DirectInput | None = None, **params):
    """Fit on ``parts`` (already one partition per worker: no repartition here) and return the Spark model;
    with ``direct`` (``direct_input`` of the same frame) the worker reads the files itself. Falls back to the
    library as is when its internals are not where this module expects them (another xgboost than the
    pinned one; the library's own builder then needs batches that mix train and valid)."""
    import xgboost.spark.core as core
    clf = binary_classifier(direct=direct, **params)
    with _session_conf(parts.sparkSession, arrow_batch_conf(_streamed(clf, parts))):
        if not all(hasattr(core, n) for n in ("worker_train", "create_dmatrix_from_partitions")):
            return clf.fit(parts)
        with _swapped(core, worker_train=_InstallsOneTaskBarrier(train_without_training_eval),
                      create_dmatrix_from_partitions=dmatrices_from_batches):
            return clf.fit(parts)
