"""Drift: a reference profile of a frame (a model's training window, its holdout scores) and the distance of
another frame (a scored day) from it, bin by bin. Pure transforms over DataFrames and small dicts; the
monitoring step and the train step's profile (issue 23) build on them.

A **profile** holds, per column, fixed bins and their counts:

- numeric: ``bins`` quantile bins of the reference (edges from Spark's ``percentile_approx``; the outer bins
  are open, so a new day's values below or above the reference range still land in a bin), with the
  reference's min and max;
- categorical: one bin per value seen (the integer codes of the spec's vocabularies, or strings);

plus the row count and the null count. Computing it takes two passes over the frame: the edges (one
aggregation), then every column's bin counts at once. A day's counts over the same bins are one pass.

**Distances** between the reference's bin shares p and the day's q (both from counts):

- PSI = sum (q - p) ln(q / p), shares floored at ``EPS`` (an empty bin would make it infinite): the usual
  reading is < 0.1 stable, 0.1-0.25 moderate, > 0.25 a major shift;
- Jensen-Shannon distance (base 2, in [0, 1]): sqrt of the mean KL divergence of p and q from their
  midpoint, scipy's ``jensenshannon`` on the same shares;
- Wasserstein-1 of the binned numeric distributions (uniform within each bin, the outer bins bounded by
  the reference's min and max but no wider than their inner neighbour, so that a heavy tail's few extreme
  values do not outweigh the body), in units of the reference's spread (its 5-95% quantile range), so one
  bar fits every feature."""
from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

EPS = 1e-4


# ---------------------------------------------------------------- profiles
def numeric_edges(df: DataFrame, columns: list[str], bins: int = 10, accuracy: int = 10_000) -> dict[str, dict[str, Any]]:
    """Quantile edges (distinct, increasing), min and max of each numeric column: one aggregation."""
    probs = [i / bins for i in range(1, bins)] + [0.05, 0.95]
    aggs = []
    for c in columns:
        x = F.col(c).cast("double")
        aggs += [F.percentile_approx(x, probs, accuracy).alias(f"{c}__q"), F.min(x).alias(f"{c}__min"), F.max(x).alias(f"{c}__max")]
    row = df.agg(*aggs).first() if aggs else None
    out = {}
    for c in columns:
        qs = list(row[f"{c}__q"] or [])
        edges = sorted(set(qs[: bins - 1]))
        out[c] = {"edges": edges, "min": row[f"{c}__min"], "max": row[f"{c}__max"],
                  "spread": (qs[-1] - qs[-2]) if len(qs) == bins + 1 else None}
    return out


def column_bins(values, s: dict[str, Any]):
    """The bin of every value of one Arrow array under one column's bins (numeric: the number of edges at or
    below it, numpy's ``searchsorted``; categorical: the listed value's position, ``len(values)`` for any
    other), and which values are null (NaN counts as null)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
    if numeric:  # nulls come out as NaN
        x = values.to_numpy(zero_copy_only=False).astype("float64", copy=False)
        null = np.isnan(x)
    else:
        series = values.to_pandas()
        null = series.isna().to_numpy()
    if s["kind"] == "numeric":
        if not numeric:
            x = series.to_numpy(dtype="float64", na_value=np.nan)
        return np.searchsorted(np.asarray(s["edges"], dtype="float64"), x, side="right"), null
    cats = [str(v) for v in s["values"]]
    if numeric and cats:  # integer codes (the features step's vocabularies): compare as numbers
        try:
            nums = np.array([float(v) for v in cats])
        except ValueError:
            nums = None
        if nums is not None:
            order = np.argsort(nums)
            pos = np.minimum(np.searchsorted(nums[order], x), len(nums) - 1)
            return np.where(nums[order][pos] == x, order[pos], len(cats)), null
    if numeric:
        series = values.to_pandas()
    codes = pd.Categorical(series.astype("string"), categories=cats).codes
    return np.where(codes < 0, len(cats), codes), null


def bin_counts(df: DataFrame, spec: dict[str, dict[str, Any]], files: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Counts per bin (numeric: by the edges; categorical: per listed value, the rest as ``__other__``),
    nulls and rows of every column of ``spec`` ({column: {"kind": "numeric", "edges": [...]} or
    {"kind": "categorical", "values": [...]}}). One pass: each Arrow batch is binned with numpy
    (``column_bins``: one vectorised search per column, no pandas frame). ``files``: Parquet files that hold
    exactly ``df``'s rows (``local_files``), read here with pyarrow; otherwise Spark bins on the executors
    (``mapInArrow``) and only each partition's counts reach the driver."""
    import numpy as np
    import pyarrow as pa
    cols = list(spec)
    sizes = [len(spec[c]["edges"]) + 1 if spec[c]["kind"] == "numeric" else len(spec[c]["values"]) + 1 for c in cols]

    def count(batches):
        total = [np.zeros(n + 1, dtype="int64") for n in sizes]  # the last slot: nulls
        for batch in batches:
            for j, c in enumerate(cols):
                b, null = column_bins(batch.column(j), spec[c])
                total[j] += np.bincount(np.where(null, sizes[j], b), minlength=sizes[j] + 1)
        yield pa.RecordBatch.from_pydict({"c": cols, "counts": [t.tolist() for t in total]})

    sums = {c: np.zeros(n + 1, dtype="int64") for c, n in zip(cols, sizes)}
    if cols and files is not None:
        import pyarrow.dataset as pads

        from jobs.common.xgb_local import unified_schema
        batches = pads.dataset(files, format="parquet", schema=unified_schema(files)).to_batches(columns=cols) if files else []
        for r in next(count(batches)).to_pylist():
            sums[r["c"]] += np.asarray(r["counts"], dtype="int64")
    elif cols:
        for r in df.select(*cols).mapInArrow(count, "c string, counts array<long>").collect():
            sums[r["c"]] += np.asarray(r["counts"], dtype="int64")
    rows = int(sums[cols[0]].sum()) if cols else int(df.count())
    return {c: {"counts": [int(v) for v in sums[c][:-1]], "nulls": int(sums[c][-1]), "rows": rows} for c in cols}


def local_files(spark, df: DataFrame, table: str) -> list[str] | None:
    """On a local master, the Parquet files of the Delta table at ``table`` that hold exactly ``df``'s rows
    (``df`` is a read of that table filtered on its partition column only: ``xgb_local.snapshot_files``), for
    ``bin_counts`` to read with pyarrow: in one process that skips Spark's row-to-Arrow conversion, the
    larger part of a Spark pass (bench/RESULTS.md). None on a cluster, where the executors bin their own
    partitions, or where the files alone would not give the rows."""
    if not spark.sparkContext.master.startswith("local"):
        return None
    from jobs.common.xgb_local import snapshot_files
    return snapshot_files(spark, df, table)


def profile(df: DataFrame, numeric: list[str], categorical: list[str], bins: int = 10) -> dict[str, dict[str, Any]]:
    """The reference profile of ``df``: every column's bins, counts, nulls and rows (two aggregations; the
    categorical values are the distinct ones seen, at most 1,000 per column)."""
    edges = numeric_edges(df, numeric, bins)
    seen = df.agg(*[F.slice(F.array_sort(F.collect_set(F.col(c).cast("string"))), 1, 1000).alias(c) for c in categorical]
                  ).first() if categorical else {}
    spec = {**{c: {"kind": "numeric", **edges[c]} for c in numeric},
            **{c: {"kind": "categorical", "values": list(seen[c] or [])} for c in categorical}}
    counts = bin_counts(df, spec)
    return {c: {**spec[c], **counts[c]} for c in spec}


# ---------------------------------------------------------------- distances
def shares(counts: list[int] | list[float]):
    """Counts as shares of their total (a uniform share when there is no count at all)."""
    import numpy as np
    c = np.asarray(counts, dtype="float64")
    total = c.sum()
    return np.full(len(c), 1.0 / len(c)) if total == 0 else c / total


def psi(reference: list, current: list, eps: float = EPS) -> float:
    """Population stability index of the current counts against the reference's, same bins."""
    import numpy as np
    p, q = np.maximum(shares(reference), eps), np.maximum(shares(current), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: list, current: list) -> float:
    """Jensen-Shannon distance, base 2 (0: the same shares, 1: disjoint bins)."""
    import numpy as np
    p, q = shares(reference), shares(current)
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))
    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def wasserstein(reference: dict[str, Any], current: list) -> float | None:
    """Wasserstein-1 distance between the reference's and the current binned numeric distributions (each
    uniform within a bin; the outer bins end at the reference's min and max, at most one neighbouring bin's
    width from the outer edges), divided by the reference's 5-95% spread. None when the reference has no
    spread."""
    import numpy as np
    lo, hi, spread = reference.get("min"), reference.get("max"), reference.get("spread")
    if lo is None or hi is None or not spread:
        return None
    edges = list(reference["edges"])
    if len(edges) >= 2:  # a heavy tail's span (up to the max) would outweigh every inner bin: no wider than the next
        lo, hi = max(lo, edges[0] - (edges[1] - edges[0])), min(hi, edges[-1] + (edges[-1] - edges[-2]))
    bounds = np.array([lo, *edges, hi], dtype="float64")
    p, q = shares(reference["counts"]), shares(current)
    # both CDFs are linear within a bin: integrate |F_p - F_q| exactly, bin by bin
    fp, fq = np.concatenate([[0], np.cumsum(p)]), np.concatenate([[0], np.cumsum(q)])
    total = 0.0
    for i in range(len(p)):
        w = bounds[i + 1] - bounds[i]
        a, b = fp[i] - fq[i], fp[i + 1] - fq[i + 1]
        if w <= 0:
            continue
        if a * b >= 0:
            total += w * (abs(a) + abs(b)) / 2
        else:  # the difference crosses zero inside the bin
            total += w * (a * a + b * b) / (2 * (abs(a) + abs(b)))
    return float(total / spread)


def distances(reference: dict[str, Any], current: dict[str, Any]) -> dict[str, float | None]:
    """Every distance of one column's current counts from its reference: PSI, then Jensen-Shannon for a
    categorical column or Wasserstein for a numeric one; and both null rates."""
    out = {"psi": psi(reference["counts"], current["counts"]),
           "null_rate_reference": reference["nulls"] / reference["rows"] if reference["rows"] else None,
           "null_rate": current["nulls"] / current["rows"] if current["rows"] else None}
    if reference["kind"] == "numeric":
        out["wasserstein"] = wasserstein(reference, current["counts"])
    else:
        out["js_distance"] = js_distance(reference["counts"], current["counts"])
    return out
