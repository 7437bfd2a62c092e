"""Golden: the golden set, a pinned and versioned Delta table of labelled examples that every evaluation
scores with a bar (``evaluate.gate.min_golden_auc``): a regression check that does not move with the data.

- **Pinned.** With ``evaluate.golden_version: auto`` (the default) the first training set built pins its
  cutoff's labelled holdout as ``golden_set`` version 0 (``features`` does it), and every evaluation scores
  the table's current version, recorded in its lineage; an integer pins that version; null turns the check
  off. ``python -m jobs.golden --ds D`` re-pins the golden set from the holdout of cutoff D (a new version).
- **Never trained on.** Every later training set moves the golden examples out of its train and valid
  windows into split ``golden`` (kept, counted, not fitted on), so no model is scored on rows it saw."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.errors import DataError

GOLDEN_SPLIT = "golden"


def holdout_rows(ts: DataFrame, cutoff, label_status: str = "label_status") -> DataFrame:
    """The rows of a training set that make a golden set: cutoff's holdout, fully known labels only (no
    weighted guesses)."""
    return ts.where((F.col("cutoff_ds") == F.lit(cutoff)) & (F.col("split") == "holdout") & (F.col(label_status) == "known"))


def pin(ctx: StepContext, ts: DataFrame) -> tuple[int, int]:
    """Write cutoff ``ctx.ds``'s labelled holdout of ``ts`` as the golden set's new version: (version, rows)."""
    golden = holdout_rows(ts, ctx.ds)
    n = golden.count()
    if n == 0:
        raise DataError(f"training_set cutoff_ds={ctx.ds} has no labelled holdout rows to pin")
    return delta_io.overwrite_table(golden, ctx.table("golden_set"), ctx.writes, "golden_set").version, n


def exclude(ts: DataFrame, golden: DataFrame | None, key: str) -> DataFrame:
    """``ts`` with the golden set's examples (by ``key``) moved from the train and valid windows to split
    ``golden``: no row is dropped, none is fitted or early-stopped on."""
    if golden is None:
        return ts
    keys = golden.select(key).distinct().withColumn("_golden", F.lit(True))
    fitted = F.col("_golden") & F.col("split").isin("train", "valid")
    return (ts.join(keys, key, "left").withColumn("split", F.when(fitted, F.lit(GOLDEN_SPLIT)).otherwise(F.col("split")))
              .drop("_golden"))


def version(spark, ctx: StepContext) -> int | None:
    """The golden set version this run's evaluation scores (``evaluate.golden_version``): its current version
    for ``auto`` (None while none is pinned), the pinned integer, or None (``null``: no golden check)."""
    chosen = ctx.params.get("evaluate", {}).get("golden_version", "auto")
    if chosen == "auto":
        return delta_io.latest_version(spark, ctx.table("golden_set"))
    return None if chosen is None else int(chosen)


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    spark = get_spark(ctx.settings, "golden")
    ts = delta_io.read_pinned(spark, ctx.table("training_set"), ctx.reads, "training_set")
    v, n = pin(ctx, ts)
    ctx.counts.update({"rows": n, "version": v})
    ctx.rows, ctx.figure = n, f"golden_set version {v}"
    print(f"golden {ctx.dataset.name}: {n} rows from the holdout of cutoff {ctx.ds} pinned as golden_set version {v}; "
          f"evaluations score it with evaluate.golden_version auto (or set evaluate.golden_version: {v})")


def main(argv: list[str] | None = None) -> None:
    run_step("golden", run, argv, __doc__)


if __name__ == "__main__":
    main()
