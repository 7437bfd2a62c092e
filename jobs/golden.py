"""Golden: pin the labelled holdout of one cutoff as the golden set, a Delta table whose version is then
named in params.yaml (``evaluate.golden_version``) so that every later evaluation scores exactly the same
rows: a regression check that does not move with the data."""
from __future__ import annotations

from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.errors import DataError


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    spark = get_spark(ctx.settings, "golden")
    ts = delta_io.read_pinned(spark, ctx.table("training_set"), ctx.reads, "training_set")
    golden = ts.where((F.col("cutoff_ds") == F.lit(ctx.ds)) & (F.col("split") == "holdout")
                      & (F.col("label_status") == "known"))  # fully known labels only, no weighted guesses
    n = golden.count()
    if n == 0:
        raise DataError(f"training_set cutoff_ds={ctx.ds} has no labelled holdout rows to pin")
    version = delta_io.overwrite_table(golden, ctx.table("golden_set"), ctx.writes, "golden_set").version
    ctx.counts.update({"rows": n, "version": version})
    print(f"golden {ctx.dataset.name}: {n} rows from the holdout of cutoff {ctx.ds} pinned as golden_set version "
          f"{version}; set params.yaml evaluate.golden_version: {version}")


def main(argv: list[str] | None = None) -> None:
    run_step("golden", run, argv, __doc__)


if __name__ == "__main__":
    main()
