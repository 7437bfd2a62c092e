"""xgboost.spark as its authors intended, plus the two changes a cluster needs that the library cannot make.

``fit_estimator`` trains a ``SparkXGBClassifier`` (or ``SparkXGBRegressor``): the library repartitions the input into one partition per
worker, runs one barrier stage of ``num_workers`` tasks, and the workers build their matrices from Arrow
batches and boost together through the collective's allreduce. Two functions of the library are replaced,
each only for an xgboost version it was checked against (``CHECKED_VERSIONS``). On any other version the
fit is the library's own, with a note in the log. ``tests/unit/test_xgb_spark.py`` fails when an
assumption about the pinned version no longer holds:

- **Batches of only train or only validation rows** (a crash fix). The library's
  ``create_dmatrix_from_partitions`` crashes with ``KeyError: 'values'`` on an Arrow batch whose train or
  validation slice is empty. After the library's shuffle, one worker's batch can hold the rows of a single
  input partition, all of them in the train window. Here each batch becomes one float32 array (the batch is
  then released) and rows are split by the validation indicator. A worker with no validation rows gets an
  empty validation matrix of the right width (``dmatrices_from_batches``).
- **No training-set evaluation** (a cost the library has no switch for). xgboost.spark evaluates the
  *training* set every round next to the validation set, and early stopping reads only the last. For
  AUC-type metrics that sorts every training row every round: a third of the boosting time at 1M rows
  (bench/RESULTS.md).

They reach the workers because xgboost.spark pickles its training closure by value: the closure resolves
``create_dmatrix_from_partitions`` and ``worker_train`` from ``xgboost.spark.core`` when it is pickled. Both
are swapped in on the driver for the duration of the fit and restored afterwards. The replacements live in
this module, so the executors import ``jobs``: ``common.spark.ship_code`` sends the package to them.

Sparse vectors, the one input this module does not handle, go to the library's own code. On one machine
the train step does not come here: its local engine trains plain XGBoost (``common.xgb_local``)."""
from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any, Iterator

DATA, LABEL, WEIGHT, MARGIN, VALID, QID = "values", "label", "weight", "baseMargin", "validationIndicator", "qid"

# xgboost releases (major.minor) whose xgboost.spark internals the substitutions were checked against
CHECKED_VERSIONS = ("3.2",)


def substitutions_apply(version: str) -> bool:
    """Whether ``version`` of xgboost is one the substitutions were checked against."""
    return ".".join(version.split(".")[:2]) in CHECKED_VERSIONS


def train_without_training_eval(*args, evals=None, **kwargs):
    """``xgboost.train`` minus the evaluation of the training set that xgboost.spark adds (runs on the workers)."""
    import xgboost
    kept = [e for e in (evals or []) if e[1] != "training"] or evals
    return xgboost.training.train(*args, evals=kept, **kwargs)


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


def fit_estimator(df, task: str = "binary", **params):
    """Fit a ``SparkXGBClassifier`` (``SparkXGBRegressor`` for ``task`` regression) on ``df`` and return the
    Spark model: the library's fit, with this module's two substitutions on a checked xgboost version and the
    library as is on any other."""
    import xgboost
    import xgboost.spark.core as core
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor
    clf = (SparkXGBRegressor if task == "regression" else SparkXGBClassifier)(**params)
    if not substitutions_apply(xgboost.__version__):
        print(f"train: xgboost {xgboost.__version__} is not one the xgboost.spark substitutions were checked "
              f"against ({', '.join(CHECKED_VERSIONS)}); fitting with the library as is")
        return clf.fit(df)
    with _swapped(core, worker_train=train_without_training_eval,
                  create_dmatrix_from_partitions=dmatrices_from_batches):
        return clf.fit(df)
