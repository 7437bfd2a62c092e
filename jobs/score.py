"""Score: batch predictions for the examples of one ds with the current champion, into the ``predictions``
Delta table (partition ds, replaced on rerun). Features come from the same ``compute_features`` the
training path uses, over the same lookback, so training and serving cannot drift apart (no skew)."""
from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.config import DatasetSpec
from jobs.common.errors import DataError
from jobs.features import compute_features, lookback_days


def scoring_features(silver: DataFrame, spec: DatasetSpec, ds: dt.date) -> DataFrame:
    """Features of the examples of ``ds`` alone, from silver rows of [ds - lookback, ds]."""
    events = silver.where(delta_io.ds_predicate(ds - dt.timedelta(days=lookback_days(spec)), ds))
    return compute_features(events, spec, ds, ds)


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    from jobs.evaluate import score
    from jobs.registry import open_registry
    spark = get_spark(ctx.settings, "score")
    spec = ctx.dataset
    champion = open_registry(ctx.settings.registry).champion(spec.name)
    if not champion:
        raise DataError(f"model '{spec.name}' has no champion in {ctx.settings.registry}: publish one first")
    version, art, manifest = champion
    if manifest["feature_names"] != spec.features.names:
        raise DataError(f"champion {version} was trained on other features than {spec.path} declares now")
    name = f"silver_{spec.example_source.name}"
    feats = scoring_features(delta_io.read_pinned(spark, ctx.table(name), ctx.reads, name), spec, ctx.ds)
    scored = score(feats, art.read_bytes(), manifest["feature_names"], manifest["feature_types"])
    ids = dict.fromkeys([spec.example_source.key, spec.entity, spec.example_source.event_time])
    out = scored.select(*ids, "score", F.lit(version).alias("model_version"), "ds")
    delta_io.replace_partitions(out, ctx.table("predictions"), ctx.ds, ctx.ds, writes=ctx.writes, name="predictions")
    ctx.counts["model_version"] = version
    print(f"score {spec.name} ds {ctx.ds}: predictions by {version} -> {ctx.table('predictions')}")


def main(argv: list[str] | None = None) -> None:
    run_step("score", run, argv, __doc__)


if __name__ == "__main__":
    main()
