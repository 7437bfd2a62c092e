"""The local training engine: plain XGBoost in this process, on the rows of a Delta snapshot read straight
from its Parquet files.

On one machine a Spark fit only adds work around the same boosting: the JVM decodes every row, streams
Arrow batches to a Python worker in a barrier stage, and that worker builds the matrices xgboost would have
built here (bench/RESULTS.md). So where the master is local, ``train.engine: auto`` trains here instead:
the frame's files (``snapshot_files``: the scan Spark planned for the pinned snapshot, partition-pruned) are
read with pyarrow through the same filter and expressions as the Spark frame (``FileRows``), and
``xgboost.XGBClassifier`` fits them with the same params, callbacks, checkpoints and artifact as
``xgboost.spark``'s estimator (both take the scikit-learn estimator's parameters). Where the files alone
would not give the frame's rows (deletion vectors, files that are not local, a column the files do not
hold under its name) the rows come from Spark itself (``DataFrame.toArrow``)."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class FileRows:
    """A training frame as pyarrow expressions over its source files: ``columns`` maps each of the frame's
    column names to an expression over the files' columns, ``filter`` keeps its rows (None: every row).
    The twin of a Spark frame (``train.training_rows`` of ``train.training_frame``): same rows, same values."""
    columns: dict[str, Any]
    filter: Any = None

    @staticmethod
    def identity(names: list[str]) -> "FileRows":
        """Each named column as the files hold it, every row."""
        import pyarrow.compute as pc
        return FileRows({n: pc.field(n) for n in names})


def snapshot_files(spark, df, table: str) -> list[str] | None:
    """The local Parquet files that Spark's scan of ``df`` (a read of the Delta table at ``table``) reads:
    the snapshot's files that survive partition pruning. None where reading those files is not reading
    ``df``'s source rows: files that are not local, or a table with deletion vectors (Delta then filters
    rows out of a file as it reads it)."""
    from urllib.parse import unquote, urlparse

    from delta.tables import DeltaTable
    files = df.inputFiles()
    if not files or any(urlparse(f).scheme not in ("", "file") for f in files):
        return None
    features = DeltaTable.forPath(spark, table).detail().select("tableFeatures").first()[0] or []
    if "deletionVectors" in features:
        return None
    return sorted(unquote(urlparse(f).path) for f in files)


def read_rows(spark, df, table: str, rows: FileRows):
    """``df``'s rows as one Arrow table: from the snapshot's files with pyarrow where they give exactly
    ``df`` (``rows`` describes ``df`` over them), else from Spark. Returns (table, how it was read)."""
    import pyarrow as pa
    files = snapshot_files(spark, df, table)
    if files:
        try:
            return read_files(files, rows), f"{len(files)} Parquet file(s) of the snapshot, read with pyarrow"
        except (pa.ArrowException, OSError, ValueError, TypeError) as e:  # a column the files lack under its name
            print(f"train: the snapshot's files do not give the frame's rows as they are ({e}); Spark reads them")
    return df.toArrow(), "Spark (toArrow)"


def unified_schema(files: list[str]):
    """One Arrow schema for the Parquet ``files`` (a later write may have added a column); raises
    ``pa.ArrowException`` where their types do not unify."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    return pa.unify_schemas([pq.read_schema(f) for f in files])


def read_files(files: list[str], rows: FileRows):
    """``rows`` over the Parquet ``files`` as one Arrow table."""
    import pyarrow.dataset as pads
    return pads.dataset(files, format="parquet", schema=unified_schema(files)).to_table(columns=rows.columns,
                                                                                         filter=rows.filter)


def matrix(data, names: list[str]):
    """The feature columns of an Arrow table as one float32 array (rows x features), nulls as NaN."""
    import numpy as np
    import pyarrow as pa
    out = np.empty((data.num_rows, len(names)), dtype=np.float32)
    for j, n in enumerate(names):
        out[:, j] = data.column(n).cast(pa.float32(), safe=False).to_numpy(zero_copy_only=False)
    return out


def split(data, *, features: list[str], label: str, weight: str, valid: str) -> dict[str, tuple]:
    """{"train": (x, y, w), "valid": (x, y, w)}: the rows of an Arrow table by its ``valid`` column, the
    features as float32 (``matrix``), label and weight as float64."""
    import numpy as np
    import pyarrow.compute as pc
    is_valid = data.column(valid).fill_null(False)
    out = {}
    for name, mask in (("train", pc.invert(is_valid)), ("valid", is_valid)):
        part = data.filter(mask)
        out[name] = (matrix(part, features), part.column(label).to_numpy(zero_copy_only=False).astype(np.float64),
                     part.column(weight).to_numpy(zero_copy_only=False).astype(np.float64))
    return out


def fit(parts: dict[str, tuple], *, feature_types: list[str], params: dict[str, Any], nthread: int,
        callbacks: list | None = None, init_model=None, task: str = "binary"):
    """Fit ``xgboost.XGBClassifier`` (``XGBRegressor`` for ``task`` regression) on ``parts["train"]`` with early stopping on ``parts["valid"]`` (the only
    set evaluated); ``params`` are the estimator's (``train.xgb_params``), ``init_model`` continues boosting
    from a checkpoint. Returns the fitted classifier (``get_booster()``)."""
    import numpy as np
    import xgboost as xgb
    params = dict(params)
    verbose = bool(params.pop("verbose", False))
    estimator = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
    clf = estimator(**params, feature_types=feature_types, enable_categorical=True, missing=np.nan,
                            n_jobs=nthread, callbacks=callbacks)
    (x, y, w), (xv, yv, wv) = parts.pop("train"), parts.pop("valid")
    clf.fit(x, y, sample_weight=w, eval_set=[(xv, yv)], sample_weight_eval_set=[wv], xgb_model=init_model,
            verbose=verbose)
    return clf
