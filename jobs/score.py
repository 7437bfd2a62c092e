"""Score: batch predictions for the examples of one ds, available first. Features come from the same
``compute_features`` the training path uses, over the same lookback (no training/serving skew).

**The fallback chain** (``score.fallback``, default champion -> previous_champion -> baseline): each is tried
when the one before cannot serve the day, for a reason code:

- ``no_model``: the alias (or the previous champion) does not exist;
- ``artifact_missing`` / ``checksum_mismatch``: its artifact is gone, or is not the one its manifest recorded;
- ``feature_missing:<col>`` / ``feature_all_null:<col>``: the day's features lack a column it reads, or hold
  only nulls in it;
- ``validation_failed``: the day failed a critical expectation (it was never published to silver): its
  staged rows are scored, but only by a model that reads no feature (the baseline);
- ``scores_invalid``: it produced a NaN or a score outside [0, 1] (a regression: a NaN or infinite one).

The first that can serves every row of the day into ``predictions`` (partition ds, replaced on rerun): key,
entity, event time, ``score``, ``decision`` (score >= threshold; null for a regression, whose score is the
predicted value), ``model_version``, ``served_by``
(``champion`` or ``fallback:<name>``) and ``reason`` (why the ones before it could not; null for the
champion). The baseline is the one published with the champion (``jobs.model``), else with an earlier one.
No row is dropped: the rows written equal the day's examples, or the step fails. When nothing in the
chain can serve, it fails with one line naming each candidate's reason.

**Shadow.** When a ``challenger`` alias exists (``publish.mode: shadow``), it scores the same rows into
``shadow_predictions`` (same keys, ``serving_version`` beside its own), which ``jobs.promote`` compares with
the served ones once labels mature. A challenger that cannot score is logged; it never blocks serving.

A validated day's features are written to the ``features`` table (partition ds, the rows training's
``features`` step computes for it): ``jobs.monitor`` measures their drift.

Every scoring of a day is a row per role (``serving``, ``shadow``) in ``scoring_events`` (replaced on rerun):
who served, why, how many rows, every candidate tried."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.config import DatasetSpec
from jobs.common.errors import ConfigError, DataError, TrainyardError
from jobs.features import as_of_sources, attr_col, compute_features, lookback_days
from jobs.model import PROBABILITIES, Model, from_registry, predict

CHAIN = ("champion", "previous_champion", "baseline")


class ScoringFailed(TrainyardError):
    """Not even the last model of the fallback chain could serve the day: no predictions were written."""

    exit_code = 4


def scoring_features(silver: DataFrame, spec: DatasetSpec, ds: dt.date,
                     sources: dict[str, DataFrame] | None = None) -> DataFrame:
    """Features of the examples of ``ds`` alone, from silver rows of [ds - lookback, ds] (``sources``: the
    silver of the sources joined as of)."""
    events = silver.where(delta_io.ds_predicate(ds - dt.timedelta(days=lookback_days(spec)), ds))
    return compute_features(events, spec, ds, ds, sources)


def ids(spec: DatasetSpec) -> list[str]:
    return list(dict.fromkeys([spec.example_source.key, spec.entity, spec.example_source.event_time, "ds"]))


# ---------------------------------------------------------------- which model serves
def candidates(registry, name: str, chain: list[str]):
    """(name, load) per link of the chain, in order; ``load()`` returns a verified Model or raises. The
    previous champion is the version the champion alias held before its current one; the baseline is the
    champion's, else that of each version the alias held before, newest first."""
    from jobs.registry import RegistryError, held_before
    alias = registry.alias(name, "champion")
    held = [alias["version"], *reversed(held_before(alias))] if alias else []  # newest first

    def model(i: int):
        def load():
            if len(held) <= i:
                raise _Unavailable("no_model", f"model '{name}' has no {'champion' if i == 0 else 'previous champion'}")
            return from_registry(registry, name, held[i])
        return load

    def baseline():
        from jobs.model import ArtifactError
        failures: list[tuple[str, str]] = []
        for version in held:
            try:
                return from_registry(registry, name, version, which="baseline")
            except ArtifactError as e:
                failures.append((e.reason, str(e)))
            except RegistryError as e:
                failures.append(("no_model", str(e)))
        reason = next((r for r, _ in failures if r != "no_model"), "no_model")
        raise _Unavailable(reason, "no verified baseline: " + ("; ".join(m for _, m in failures) or f"model '{name}' has no version"))
    loaders = {"champion": model(0), "previous_champion": model(1), "baseline": baseline}
    unknown = [c for c in chain if c not in loaders]
    if unknown:
        raise ConfigError(f"params score.fallback: {unknown} are not among {list(loaders)}")
    return [(c, loaders[c]) for c in chain]


class _Unavailable(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def load_reason(load) -> tuple[Model | None, str | None, str | None]:
    """(model, None, None) or (None, reason code, detail) for one link of the chain."""
    from jobs.model import ArtifactError
    from jobs.registry import RegistryError
    try:
        return load(), None, None
    except (_Unavailable, ArtifactError) as e:  # both carry their reason code
        return None, e.reason, str(e)
    except RegistryError as e:
        return None, "artifact_missing", str(e)


def input_reason(model: Model, nonnull: dict[str, int], validated: bool) -> str | None:
    """Why ``model`` cannot score the day's features (``nonnull``: non-null count per column), or None."""
    needed = model.required_columns()
    if needed and not validated:
        return "validation_failed"
    for c in needed:
        if c not in nonnull:
            return f"feature_missing:{c}"
        if nonnull[c] == 0:
            return f"feature_all_null:{c}"
    return None


def invalid_scores(scored: DataFrame, col: str = "score", probabilities: bool = True) -> int:
    """Rows whose score is missing, NaN or infinite, or (``probabilities``) outside [0, 1]."""
    s = F.col(col)
    bad = s.isNull() | F.isnan(s) | (F.abs(s) == float("inf"))
    return scored.where(bad | (s < 0) | (s > 1) if probabilities else bad).count()


# ---------------------------------------------------------------- the day's rows
def validation_state(ctx: StepContext) -> tuple[bool, list[str]]:
    """(passed, records) of the day's validation: the records validate wrote in the day's run folder, one per
    source; one failure and validate published none of the day's rows. No record (a day validated within a
    range run of a later ds): the day is read from silver, where only validated rows are."""
    from jobs.validate import validation_results
    results = validation_results(ctx.run_dir)
    failed = [path for path, passed in results.items() if not passed]
    return not failed, failed or list(results)


def day_features(spark, ctx: StepContext, validated: bool) -> DataFrame:
    """Features of the day's examples: from silver when the day passed validation; from the rows etl staged
    for it (silver for the days before) when it did not, so that it is still scored (by a model that reads
    no feature). With a day whose columns are too broken for the features, those rows with their slice
    columns alone."""
    from jobs.etl import SUPERSEDES
    spec, src = ctx.dataset, ctx.dataset.example_source
    silver_name = f"silver_{src.name}"
    silver = delta_io.read_pinned(spark, ctx.table(silver_name), ctx.reads, silver_name)
    sources = as_of_sources(spark, ctx, ctx.ds, ctx.ds)
    if validated:
        return scoring_features(silver, spec, ctx.ds, sources)
    staged_name = f"staged_{src.name}"
    staged = (delta_io.read_pinned(spark, ctx.table(staged_name), ctx.reads, staged_name)
              .where(delta_io.ds_predicate(ctx.ds, ctx.ds)).drop(SUPERSEDES))
    before = silver.where(delta_io.ds_predicate(ctx.ds - dt.timedelta(days=lookback_days(spec)), ctx.ds - dt.timedelta(days=1)))
    try:
        feats = compute_features(before.unionByName(staged, allowMissingColumns=True), spec, ctx.ds, ctx.ds, sources)
        feats.schema  # analysis errors (a column the features need is gone) surface here
        return feats
    except Exception as e:  # noqa: BLE001 - any analysis error: the baseline scores the raw rows
        print(f"score: the features of unvalidated ds {ctx.ds} cannot be computed ({str(e).splitlines()[0]}); "
              "scoring its staged rows with their slice columns")
        attrs = [F.col(c).cast("string").alias(attr_col(c)) for c in dict.fromkeys([*spec.sensitive, *spec.slices])
                 if c in staged.columns]
        return staged.select(*[F.col(c) for c in ids(spec) if c in staged.columns], *attrs)


def check_day_processed(spark, ctx: StepContext) -> None:
    """A day with no example in silver is scored as empty only if etl processed it (its ledger has the day)
    and staged nothing that validate has not decided on: no rows is then what the day held."""
    src = ctx.dataset.example_source.name
    staged, ledger = ctx.table(f"staged_{src}"), ctx.table("etl_ledger")
    day = delta_io.ds_predicate(ctx.ds, ctx.ds)
    if not delta_io.is_delta(spark, ledger) or not spark.read.format("delta").load(ledger).where(
            day).where(F.col("source") == src).limit(1).count():
        raise ScoringFailed(f"ds {ctx.ds}: etl has not processed {src} for the day (no etl_ledger row): nothing "
                            f"to score; land the day and run python -m jobs.etl --ds {ctx.ds} first")
    if delta_io.is_delta(spark, staged) and spark.read.format("delta").load(staged).where(day).limit(1).count():
        raise ScoringFailed(f"ds {ctx.ds}: etl staged rows for staged_{src} that are not in silver and no "
                            f"validation result says why: run python -m jobs.validate --ds {ctx.ds} first")


# ---------------------------------------------------------------- serving
def nonnull_counts(feats: DataFrame) -> dict[str, int]:
    """Non-null count of every column of the day's features (one aggregation)."""
    return feats.select([F.count(F.col(c)).alias(c) for c in feats.columns]).first().asDict()


def serve(feats: DataFrame, keep: list[str], links, validated: bool, threshold: float | None, role: str = "serving",
          nonnull: dict[str, int] | None = None) -> tuple[DataFrame | None, dict[str, Any]]:
    """The first link of ``links`` that can score ``feats`` (cached by the caller): (its scored rows, cached,
    with the ``keep`` columns, score, decision, model_version, served_by and reason; the event) or (None, the
    event) when none can. The event lists every attempt. ``threshold`` None: no decision (a regression,
    whose score is the prediction itself, any finite number; a multiclass model, whose rows also get
    ``predicted_class`` and ``probabilities``). ``nonnull``: ``nonnull_counts(feats)``,
    when the caller has it already."""
    nonnull = nonnull_counts(feats) if nonnull is None else nonnull
    attempts: list[dict[str, Any]] = []
    for i, (name, load) in enumerate(links):
        model, reason, detail = load_reason(load)
        if model is not None:
            reason = input_reason(model, nonnull, validated)
            detail = reason
        if reason is None:
            served_by = name if role == "shadow" or (i == 0 and name == "champion") else f"fallback:{name}"
            why = "; ".join(f"{a['candidate']}: {a['reason']}" for a in attempts) or None
            raw = predict(feats, model)
            scored = raw.select(
                *keep, "score", (F.col("score") >= F.lit(threshold) if threshold is not None else F.lit(None).cast("boolean")
                                 ).alias("decision"), *[c for c in ("predicted_class", PROBABILITIES) if c in raw.columns],
                F.lit(model.version).alias("model_version"), F.lit(served_by).alias("served_by"),
                F.lit(why).cast("string").alias("reason")).cache()
            bad = invalid_scores(scored, probabilities=threshold is not None or PROBABILITIES in raw.columns)
            if not bad:
                attempts.append({"candidate": name, "version": model.version, "reason": None})
                return scored, {"role": role, "served_by": served_by, "model_version": model.version, "reason": why,
                                "attempts": attempts}
            scored.unpersist()
            reason, detail = "scores_invalid", f"{bad} NaN or out-of-range score(s)"
        attempts.append({"candidate": name, "version": model.version if model else None, "reason": reason,
                         "detail": detail})
    return None, {"role": role, "served_by": None, "model_version": None,
                  "reason": "; ".join(f"{a['candidate']}: {a['reason']}" for a in attempts), "attempts": attempts}


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    from jobs.registry import open_registry
    spark = get_spark(ctx.settings, "score")
    spec, p = ctx.dataset, ctx.step_params()
    threshold = float(p["threshold"] if p.get("threshold") is not None else ctx.params.get("evaluate", {}).get("threshold", 0.5))
    if spec.task != "binary":  # a regression's score is its prediction, a multiclass one its class's probability
        threshold = None         # (beside predicted_class and every class's probability): no decision
    registry = open_registry(ctx.settings.registry)
    validated, records = validation_state(ctx)
    if not validated:
        print(f"score {spec.name} ds {ctx.ds}: the day FAILED validation ({', '.join(records)}); only a model that "
              "reads no feature may serve it")
    feats = day_features(spark, ctx, validated).cache()
    n = feats.count()
    if n == 0 and validated:
        check_day_processed(spark, ctx)
    if validated:  # the day's features, the same as training's features step computes: what monitor reads
        delta_io.replace_partitions(feats, ctx.table("features"), ctx.ds, ctx.ds, writes=ctx.writes, name="features",
                                    evolve=True)
    keep = [c for c in ids(spec) if c in feats.columns]
    nonnull = nonnull_counts(feats)
    served, event = serve(feats, keep, candidates(registry, spec.name, list(p.get("fallback") or CHAIN)), validated,
                          threshold, nonnull=nonnull)
    events = [event]
    if served is None:
        _write_events(spark, ctx, events, n)
        raise ScoringFailed(f"{spec.name} ds {ctx.ds}: no model of the fallback chain could score the day's {n} "
                            f"example(s), nothing written: {event['reason']}")
    commit = delta_io.replace_partitions(served, ctx.table("predictions"), ctx.ds, ctx.ds,
                                         writes=ctx.writes, name="predictions")
    if commit.rows is not None and commit.rows != n:
        raise DataError(f"predictions for ds {ctx.ds}: {commit.rows} rows written for {n} examples")
    event["rows"] = n
    shadow = shadow_score(feats, keep, registry, spec.name, validated, threshold, event["model_version"],
                          nonnull) if p.get("shadow", True) else None
    if shadow is not None:
        scored, sev = shadow
        rows = delta_io.replace_partitions(scored if scored is not None else _empty_shadow(spark, served, keep),
                                           ctx.table("shadow_predictions"), ctx.ds, ctx.ds, writes=ctx.writes,
                                           name="shadow_predictions").rows
        sev["rows"] = rows or 0
        events.append(sev)
    _write_events(spark, ctx, events, n)
    served.unpersist()
    feats.unpersist()
    ctx.counts.update({"rows": n, "served_by": event["served_by"], "model_version": event["model_version"],
                       "reason": event["reason"], "shadow": events[1] if len(events) > 1 else None})
    line = f"score {spec.name} ds {ctx.ds}: {n} predictions by {event['model_version']} ({event['served_by']})"
    ctx.rows = n
    ctx.figure = f"served by {event['served_by']} {event['model_version']}" + (f": FALLBACK because {event['reason']}"[:160]
                                                                              if event["reason"] else "")
    if event["reason"]:
        line = f"score {spec.name} ds {ctx.ds}: FALLBACK: {n} predictions by {event['served_by']} " \
               f"{event['model_version']} because {event['reason']}"
    print(line + f" -> {ctx.table('predictions')}" + (f"; shadow {events[1]['served_by']}: {events[1]['reason'] or 'scored'}"
                                                      if len(events) > 1 else ""))


def shadow_score(feats: DataFrame, keep: list[str], registry, name: str, validated: bool, threshold: float,
                 serving_version: str | None, nonnull: dict[str, int]):
    """(scored rows or None, event) of the challenger on the served rows; None when there is no challenger."""
    alias = registry.alias(name, "challenger")
    if not alias:
        return None
    link = ("challenger", lambda: from_registry(registry, name, alias["version"]))
    scored, event = serve(feats, keep, [link], validated, threshold, role="shadow", nonnull=nonnull)
    if scored is not None:
        scored = scored.drop("served_by", "reason").withColumn("serving_version", F.lit(serving_version))
        event["reason"] = None
    else:
        event["model_version"] = alias["version"]
        print(f"score {name}: the challenger {alias['version']} could not score the day: {event['reason']}")
    return scored, event


def _empty_shadow(spark, served: DataFrame, keep: list[str]) -> DataFrame:
    """A frame with shadow_predictions' columns and no row: a day the challenger could not score replaces
    that day's partition with nothing (a rerun never leaves an earlier challenger's rows)."""
    extra = [c for c in ("predicted_class", PROBABILITIES) if c in served.columns]
    return served.select(*keep, "score", "decision", *extra, "model_version").withColumn(
        "serving_version", F.lit(None).cast("string")).limit(0)


def _write_events(spark, ctx: StepContext, events: list[dict[str, Any]], n: int) -> None:
    rows = [(ctx.ds, ctx.run_id, e["role"], e.get("served_by"), e.get("model_version"), e.get("reason"),
             int(e.get("rows", 0)), n, json.dumps(e["attempts"])) for e in events]
    df = spark.createDataFrame(rows, "ds date, run_id string, role string, served_by string, model_version string, "
                                     "reason string, rows long, examples long, attempts string")
    delta_io.replace_partitions(df, ctx.table("scoring_events"), ctx.ds, ctx.ds, writes=ctx.writes, name="scoring_events")


def main(argv: list[str] | None = None) -> None:
    run_step("score", run, argv, __doc__)


if __name__ == "__main__":
    main()
