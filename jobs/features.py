"""Features: the declared features of the dataset spec, point-in-time correct, for the examples of the ds
partitions [--start-ds, --ds] (table ``features``), then the training set of this run's cutoff (table
``training_set``, partition ``cutoff_ds``): features joined with the labels that were known by the cutoff,
split by time into train / valid / holdout.

Point in time: an entity aggregate for an example at time t that landed on day D sees only events with
event time strictly before t (window frames end one microsecond before t) that had landed by D (silver
partitions up to D), so day D's features are identical from the nightly run, a backfill range and scoring.
The same ``compute_features`` serves training and batch scoring."""
from __future__ import annotations

import datetime as dt
import re
from functools import partial
from typing import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from jobs import golden
from jobs.common import delta_io, sqlexpr
from jobs.common.cli import StepContext, run_step
from jobs.common.config import Aggregate, AsOf, DatasetSpec
from jobs.common.errors import ConfigError, DataError
from jobs.common.sqlexpr import referenced_columns

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TS = "_ts_us"
LABEL_STATUS = "label_status"


def window_seconds(window: str) -> int:
    m = re.fullmatch(r"(\d+)([smhd])", window)
    if not m:
        raise ConfigError(f"feature window '{window}' is not <number><s|m|h|d>, e.g. 30d")
    return int(m.group(1)) * UNITS[m.group(2)]


def lookback_days(spec: DatasetSpec) -> int:
    """How much history before the first example the aggregates and recency windows need."""
    secs = [window_seconds(a.window) for a in spec.features.aggregates]
    secs += [window_seconds(r.window) for r in spec.features.recency.values()]
    secs += [window_seconds(j.max_age) for j in spec.features.as_of]
    return -(-max(secs + [0]) // 86400)


SIMPLE_AGGS = {"count": F.count, "sum": F.sum, "mean": F.avg, "max": F.max, "min": F.min}


def _check_agg(a: Aggregate) -> None:
    if a.agg not in (*SIMPLE_AGGS, "distinct_count"):
        raise ConfigError(f"feature '{a.name}': unknown aggregate '{a.agg}' (count, sum, mean, max, min, distinct_count)")


def _agg_over(a: Aggregate, w) -> Column:
    _check_agg(a)
    col = F.col(a.column) if a.column else F.lit(1)
    if a.agg == "distinct_count":
        return F.size(F.collect_set(col).over(w))
    return SIMPLE_AGGS[a.agg](col).over(w)


def _agg(a: Aggregate, col: Column) -> Column:
    """``a``'s aggregate of ``col`` in a group (nulls are not counted), named ``_a_<name>``."""
    _check_agg(a)
    return (F.count_distinct(col) if a.agg == "distinct_count" else SIMPLE_AGGS[a.agg](col)).alias(f"_a_{a.name}")


def leakage_check(events: DataFrame, spec: DatasetSpec) -> None:
    """Refuse, naming the feature, any feature whose inputs were not known before the example's time:
    the label itself, or a column declared ``known_at`` another timestamp that is not strictly before the
    event time on every row. An aggregate over such a column is not refused: it counts each row's value as
    of the example's time (``known_by_time``); its entity must be known at the event time."""
    from jobs.common.errors import LeakageError
    src, f = spec.example_source, spec.features
    label_cols = {spec.label.name} | set(label_inputs(spec, list(events.columns)))
    late = late_columns(spec)
    uses: dict[str, list[str]] = {n: referenced_columns(e, list(events.columns)) for n, e in f.derived.items()}
    uses.update({n: [n] for n in f.numeric})
    uses.update({n: list(v) for n, v in f.ratios.items()})
    uses.update({n: [n] for n in f.categorical})
    for a in f.aggregates:
        uses[a.name] = [c for c in (a.column, *a.entity) if c and not (c == a.column and c in late)]
    for name, used in uses.items():
        if label_cols & set(used):
            raise LeakageError(f"feature '{name}' reads the label ({sorted(label_cols & set(used))}): refused")
        for c in used:
            if c in late:
                known = F.col(late[c])
                n = events.where(F.col(c).isNotNull() & (known.isNull() | (known >= F.col(src.event_time)))).limit(1).count()
                if n:
                    raise LeakageError(f"feature '{name}' reads '{c}', which becomes known at '{late[c]}', not before the "
                                       f"example's time '{src.event_time}': refused")


def late_columns(spec: DatasetSpec) -> dict[str, str]:
    """The examples' columns known only later than the event (``known_at`` another timestamp): column -> when."""
    src = spec.example_source
    return {c.name: c.known_at for c in src.columns if c.known_at and c.known_at != src.event_time}


def known_by_time(examples: DataFrame, events: DataFrame, spec: DatasetSpec) -> DataFrame:
    """``examples`` (with ``TS`` and ``ds``) with the aggregates over late-known columns: for an example at
    time t landed on day D, the rows of ``events`` of the same entity with event time s in [t - window, t),
    landed by D, each counted with its value only if that value was known strictly before t (its
    ``known_at`` < t; not yet known: null, as if absent). Chargebacks per card known by t; the delays of a
    plane's earlier flights that had arrived by t. A range join per entity (``_rows_before``), bounded by
    the entity's longest such window."""
    src, late = spec.example_source, late_columns(spec)
    groups: dict[tuple[str, ...], list[Aggregate]] = {}
    for a in spec.features.aggregates:
        if a.column in late:
            groups.setdefault(tuple(a.entity), []).append(a)
    out = examples
    for entity, aggs in groups.items():
        width = max(window_seconds(a.window) for a in aggs) * 1_000_000
        cols = list(dict.fromkeys(a.column for a in aggs))
        cand = events.select(*[F.col(c).alias(f"_j{i}") for i, c in enumerate(entity)], F.col(TS).alias("_s"),
                             F.col("ds").alias("_sds"), *[F.col(c).alias(f"_v{j}") for j, c in enumerate(cols)],
                             *[F.unix_micros(F.col(late[c])).alias(f"_kn{j}") for j, c in enumerate(cols)])
        hit = _rows_before(examples, list(entity), cand, width, src.key)

        def known(a: Aggregate) -> Column:  # the row's value if inside a's window and known before t, else null
            j = cols.index(a.column)
            inside = (F.col("_s") >= F.col("_t") - window_seconds(a.window) * 1_000_000) & (F.col(f"_kn{j}") < F.col("_t"))
            return F.when(inside, F.col(f"_v{j}"))
        got = hit.groupBy("_k", "_d").agg(*[_agg(a, known(a)) for a in aggs])
        out = _attach(out, got, src.key, {f"_a_{a.name}": a.name for a in aggs})
    return out


def _rows_before(examples: DataFrame, on: list[str], cand: DataFrame, width: int, key: str) -> DataFrame:
    """The pairs of an example (``_k`` its key, ``_d`` its ds, ``_t`` its time in µs) and a row of ``cand``
    (``_s`` its time in µs, ``_sds`` its landing day, ``_j<i>`` the values of ``on``) with equal ``on``,
    t - width <= s < t, landed by the example's day. Bounded: both sides are bucketed by time in width-wide
    buckets, and an example looks in its own bucket and the one before."""
    bucket = lambda c: F.floor(F.col(c) / width)  # noqa: E731
    ex = (examples.select(F.col(key).alias("_k"), F.col("ds").alias("_d"), F.col(TS).alias("_t"),
                          *[F.col(c).alias(f"_j{i}") for i, c in enumerate(on)])
          .withColumn("_b", F.explode(F.array(bucket("_t"), bucket("_t") - 1))))
    return (ex.join(cand.withColumn("_b", bucket("_s")), [*[f"_j{i}" for i in range(len(on))], "_b"])
            .where((F.col("_s") < F.col("_t")) & (F.col("_s") >= F.col("_t") - width) & (F.col("_sds") <= F.col("_d"))))


def _attach(examples: DataFrame, got: DataFrame, key: str, columns: dict[str, str]) -> DataFrame:
    """``examples`` with ``columns`` ({column of ``got``: name}) of ``got`` (one row per ``_k``, ``_d``: an
    example's key and ds); null for an example ``got`` has no row for."""
    return (examples.join(got, (examples[key] == got["_k"]) & (examples["ds"] == got["_d"]), "left")
            .select(*examples.columns, *[F.col(c).alias(n) for c, n in columns.items()]))


def windowed_features(spec: DatasetSpec) -> dict[tuple[str, ...], list[tuple[str, int, Callable[[WindowSpec], Column]]]]:
    """The aggregates and recency features grouped by entity: entity -> [(name, window seconds, column over
    a window)]. Recency is the latest earlier event time in its window (turned into seconds afterwards)."""
    groups: dict[tuple[str, ...], list] = {}
    late = late_columns(spec)
    for a in spec.features.aggregates:
        if a.column in late:  # as of the example's time, not the aggregated event's: ``known_by_time``
            continue
        groups.setdefault(tuple(a.entity), []).append((a.name, window_seconds(a.window), partial(_agg_over, a)))
    for name, r in spec.features.recency.items():
        groups.setdefault(tuple(r.entity), []).append((name, window_seconds(r.window), lambda w: F.max(TS).over(w)))
    return groups


def _over_windows(df: DataFrame, entity: tuple[str, ...], feats: list, *partition: str) -> DataFrame:
    for name, secs, over in feats:  # frames end 1 µs before the row: strictly earlier events only
        df = df.withColumn(name, over(Window.partitionBy(*entity, *partition).orderBy(TS).rangeBetween(-secs * 1_000_000, -1)))
    return df


def as_of_landing(base: DataFrame, plain: DataFrame, spec: DatasetSpec, start: dt.date, end: dt.date) -> DataFrame:
    """Windowed features of a range run as each example's own day saw them: an example that landed on day
    D sees only events landed by D (ingest ds <= D). Only events that landed after their event day (late
    arrivals) and after the range's first day can differ from ``plain`` (every event up to ``end``); the
    examples of the entities such events touch are recomputed with each event repeated into the days it was
    visible on (``_cohort``: from its landing day to ``end``), one window pass per entity, and joined back."""
    src = spec.example_source
    late = base.where((F.col("ds") > F.lit(start)) & (F.to_date(F.col(src.event_time)) < F.col("ds")))
    if not late.limit(1).count():  # the common case: nothing landed late within the range, ``plain`` is exact
        return plain
    out = plain
    for i, (entity, feats) in enumerate(windowed_features(spec).items()):
        touched = base.join(late.select(*entity).distinct(), list(entity), "left_semi")
        cohorts = touched.withColumn("_cohort", F.explode(F.sequence(F.greatest(F.col("ds"), F.lit(start)), F.lit(end))))
        fixed = (_over_windows(cohorts, entity, feats, "_cohort").where(F.col("_cohort") == F.col("ds"))
                 .select(F.col(src.key).alias(f"_k{i}"), F.col("ds").alias(f"_d{i}"), F.lit(True).alias(f"_asof{i}"),
                         *[F.col(n).alias(f"{n}__asof") for n, _, _ in feats]))
        out = out.join(fixed, (out[src.key] == fixed[f"_k{i}"]) & (out["ds"] == fixed[f"_d{i}"]), "left")
        for n, _, _ in feats:
            out = out.withColumn(n, F.when(F.col(f"_asof{i}"), F.col(f"{n}__asof")).otherwise(F.col(n)))
        out = out.drop(f"_k{i}", f"_d{i}", f"_asof{i}", *[f"{n}__asof" for n, _, _ in feats])
    return out


def as_of_join(examples: DataFrame, j: AsOf, rows: DataFrame, spec: DatasetSpec) -> DataFrame:
    """``examples`` (with ``TS``, the event time in µs, and ``ds``) with ``j``'s feature columns: per example
    at time t landed on day D, the values of the latest row of ``rows`` (silver of ``j.source``) with the same
    keys, event time s with t - max_age <= s < t, landed by D (its ds <= D); null when there is none. Equal
    times: the row with the largest key. The candidates are bounded by max_age: both sides are bucketed by
    time in max_age-wide buckets (``_rows_before``)."""
    src = spec.sources[j.source]
    width = window_seconds(j.max_age) * 1_000_000
    cand = rows.select(*[F.col(c).alias(f"_j{i}") for i, c in enumerate(j.keys.values())],
                       F.unix_micros(F.col(src.event_time)).alias("_s"), F.col("ds").alias("_sds"),
                       F.col(src.key).cast("string").alias("_skey"),
                       *[F.col(c).cast("double").alias(f"_v_{n}") for c, n in j.columns.items()])
    hit = _rows_before(examples, list(j.keys), cand, width, spec.example_source.key)
    latest = hit.groupBy("_k", "_d").agg(F.max(F.struct("_s", "_skey", *[f"_v_{n}" for n in j.columns.values()])).alias("_r"))
    return _attach(examples, latest, spec.example_source.key, {f"_r._v_{n}": n for n in j.columns.values()})


def as_of_sources(spark, ctx: StepContext, start: dt.date, end: dt.date) -> dict[str, DataFrame]:
    """Silver of every source the spec joins as of (``features.as_of``), pinned, for [start - lookback, end]."""
    out = {}
    for name in dict.fromkeys(j.source for j in ctx.dataset.features.as_of):
        table = f"silver_{name}"
        out[name] = (delta_io.read_pinned(spark, ctx.table(table), ctx.reads, table)
                     .where(delta_io.ds_predicate(start - dt.timedelta(days=lookback_days(ctx.dataset)), end)))
    return out


def compute_features(events: DataFrame, spec: DatasetSpec, start: dt.date, end: dt.date,
                     sources: dict[str, DataFrame] | None = None) -> DataFrame:
    """Pure transform: ``events`` = silver rows of the examples source covering [start - lookback, end]
    (``sources``: silver of the sources joined as of, ``as_of_sources``); returns one row per example with
    landing day (ds) in [start, end]: key, entity, event time, ds, the declared features, and the slice
    columns. Built only from Spark built-ins and window functions.

    Point in time: an example at time t that landed on day D sees events with event time strictly before t,
    within the feature's window, that had landed by D. So day D's features are the same whichever run
    computes them: the nightly run of D, a range run (backfill) that covers D, or scoring of D."""
    src = spec.example_source
    f = spec.features
    leakage_check(events, spec)
    base = events.withColumn(TS, F.unix_micros(F.col(src.event_time)))
    for name, expr in f.derived.items():
        base = base.withColumn(name, F.expr(expr))
    df = base
    for entity, feats in windowed_features(spec).items():
        df = _over_windows(df, entity, feats)
    if start < end:
        df = as_of_landing(base, df, spec, start, end)
    if any(a.column in late_columns(spec) for a in f.aggregates):
        df = known_by_time(df.where(delta_io.ds_predicate(start, end)), base, spec)
    for a in f.aggregates:
        if a.agg in ("count", "distinct_count", "sum"):
            df = df.withColumn(a.name, F.coalesce(F.col(a.name), F.lit(0)).cast("double"))
    for name in f.recency:
        df = df.withColumn(name, ((F.col(TS) - F.col(name)) / 1_000_000).cast("double"))
    for name, (num, den) in f.ratios.items():
        df = df.withColumn(name, F.when(F.col(den) > 0, F.col(num) / F.col(den)))
    if f.as_of:
        df = df.where(delta_io.ds_predicate(start, end))  # only the examples are joined, not the lookback
        for j in f.as_of:
            if not sources or j.source not in sources:
                raise ConfigError(f"{spec.path}: features.as_of.{j.name} joins source '{j.source}', which was not read")
            df = as_of_join(df, j, sources[j.source], spec)
    for name, vocab in f.categorical.items():
        if name in f.learned:  # the raw value: each training set learns its vocabulary (jobs.model.encode)
            continue
        code = F.lit(len(vocab))  # unknown and null share the last code: a fixed vocabulary, no target info
        for i, v in reversed(list(enumerate(vocab))):
            code = F.when(F.col(name) == v, F.lit(i)).otherwise(code)
        df = df.withColumn(f"{name}__code", code.cast("int"))
    keep = list(dict.fromkeys([src.key, spec.entity, src.event_time, "ds"]))
    feats = [F.col(n).cast("string").alias(n) if n in f.learned else F.col(f"{n}__code").alias(n) if n in f.categorical
             else F.col(n).cast("double").alias(n) for n in f.names]
    attrs = [F.col(c).cast("string").alias(attr_col(c)) for c in dict.fromkeys([*spec.sensitive, *spec.slices])]
    label = inline_label(spec, events)
    return (df.where(delta_io.ds_predicate(start, end))
              .select(*[F.col(c) for c in keep], *feats, *attrs, *label))


def label_inputs(spec: DatasetSpec, columns: list[str]) -> list[str]:
    """The examples' columns an inline label is computed from (none for a label feed)."""
    lab = spec.label
    return [lab.column] if lab.column else referenced_columns(lab.expr, columns) if lab.expr else []


def inline_label(spec: DatasetSpec, examples: DataFrame) -> list[Column]:
    """The inline label's value as a column of ``examples`` (silver rows), named ``label.inline_column``:
    the label column, or the label expression (checked: it must resolve, to a boolean or a number); [] for a
    label feed."""
    lab = spec.label
    if lab.column:
        return [F.col(lab.column)]
    if not lab.expr:
        return []
    kind = sqlexpr.check(examples, lab.expr, f"{spec.path}: label.expr", spec.example_source.column_names)
    numbers = ("byte", "short", "integer", "long", "float", "double", "decimal")
    if spec.task == "multiclass":  # any value: compared as text with label.classes
        return [F.expr(lab.expr).alias(lab.inline_column)]
    if spec.task == "regression" and kind.typeName() not in numbers:
        raise ConfigError(f"{spec.path}: label.expr '{lab.expr}' gives {kind.simpleString()} values; a regression "
                          f"label is a number (e.g. \"arr_delay\")")
    if kind.typeName() not in ("boolean", *numbers):
        raise ConfigError(f"{spec.path}: label.expr '{lab.expr}' gives {kind.simpleString()} values; a binary label "
                          f"is a boolean (e.g. \"arr_delay > 15\") or 0/1")
    return [F.expr(lab.expr).alias(lab.inline_column)]


def attr_col(name: str) -> str:
    """Column holding the raw value of a slice attribute (a feature of the same name may be encoded)."""
    return f"attr_{name}"


YOUNG_POLICIES = ("exclude", "weight")


def label_delay_cdf(features: DataFrame, labels: DataFrame, spec: DatasetSpec, cutoff: dt.datetime) -> list[float]:
    """Empirical CDF of label delay in whole days, F[a] = share of positives whose label arrived within
    ``a`` days of the event, from positives known by the cutoff whose events are ``maturity_days`` old
    (so that their delay up to maturity is fully observed). Small: one value per day up to maturity."""
    lab, src = spec.label, spec.example_source
    cutoff_lit = F.lit(cutoff).cast("timestamp")
    m = lab.maturity_days
    known = labels.where(F.col(lab.known_at) < cutoff_lit).select(F.col(lab.source_key).alias(src.key), lab.known_at)
    mature = features.where(F.col(src.event_time) < cutoff_lit - F.expr(f"INTERVAL {m} DAYS")).select(src.key, src.event_time)
    delay = F.floor((F.unix_seconds(F.col(lab.known_at)) - F.unix_seconds(F.col(src.event_time))) / 86400).cast("int")
    rows = mature.join(known, on=src.key).groupBy(F.least(delay, F.lit(m)).alias("d")).count().collect()
    total = sum(r["count"] for r in rows)
    if not total:  # no evidence yet: a linear ramp to maturity
        return [min(1.0, a / max(m, 1)) for a in range(m + 1)]
    counts = {r["d"]: r["count"] for r in rows}
    cdf, acc = [], 0
    for a in range(m + 1):
        acc += counts.get(a, 0)
        cdf.append(acc / total)
    return cdf


def label_examples(features: DataFrame, spec: DatasetSpec, cutoff: dt.datetime, labels: DataFrame | None,
                   policy: str = "exclude", delay_cdf: list[float] | None = None) -> DataFrame:
    """Attach the label as known at ``cutoff`` and a ``weight``. A label-feed positive counts only if it
    arrived strictly before the cutoff. With no positive, an example is negative once it is
    ``maturity_days`` old. A younger one, whose positive label may still be on its way, is never simply
    labelled negative: ``exclude`` leaves it unlabelled (null, held out); ``weight`` makes it a negative
    weighted by F(age), the share of positive labels that arrive within its age (``label_delay_cdf``)."""
    if policy not in YOUNG_POLICIES:
        raise ConfigError(f"params features.young_labels '{policy}' is not one of {YOUNG_POLICIES}")
    lab = spec.label
    cutoff_lit = F.lit(cutoff).cast("timestamp")
    src = spec.example_source
    if lab.inline_column:
        known = F.col(src.event_time) < cutoff_lit
        inline = F.col(lab.inline_column)
        if spec.task == "regression":
            value = inline.cast("double")
        elif spec.task == "multiclass":  # the class index, 0..K-1 (array_position is 1-based, 0 when absent)
            value = F.when(inline.cast("string").isin(*lab.classes),
                           F.array_position(F.array(*map(F.lit, lab.classes)), inline.cast("string")) - 1).cast("int")
        else:
            value = (inline.isin(*lab.positive_values) if lab.column else inline).cast("int")
        out = features.withColumn(lab.name, F.when(known, value)).drop(lab.inline_column).withColumn("weight", F.lit(1.0))
        return out.withColumn(LABEL_STATUS, F.when(F.col(lab.name).isNull(), "unknown").otherwise("known"))
    assert labels is not None
    pos = (labels.where(F.col(lab.known_at) < cutoff_lit)
           .select(F.col(lab.source_key).alias(src.key)).distinct().withColumn("_pos", F.lit(1)))
    mature = F.col(src.event_time) < (cutoff_lit - F.expr(f"INTERVAL {lab.maturity_days} DAYS"))
    out = features.join(pos, on=src.key, how="left")
    is_pos = F.col("_pos") == 1
    status = F.when(is_pos | mature, "known")
    if policy == "weight":
        cdf = delay_cdf or [1.0]
        age = F.least(F.floor((F.unix_seconds(cutoff_lit) - F.unix_seconds(F.col(src.event_time))) / 86400).cast("int"),
                      F.lit(len(cdf) - 1))
        weight = F.element_at(F.array(*[F.lit(float(x)) for x in cdf]), age + 1)
        out = (out.withColumn(lab.name, F.when(is_pos, 1).otherwise(0).cast("int"))
                  .withColumn("weight", F.when(is_pos | mature, F.lit(1.0)).otherwise(weight))
                  .withColumn(LABEL_STATUS, status.otherwise("weighted")))
    else:
        out = (out.withColumn(lab.name, F.when(is_pos, F.lit(1)).when(mature, F.lit(0)).cast("int"))
                  .withColumn("weight", F.lit(1.0))
                  .withColumn(LABEL_STATUS, status.otherwise("unknown")))
    return out.drop("_pos")


def split_by_time(df: DataFrame, ds: dt.date, gap_days: int, train_days: int, valid_days: int,
                  holdout_days: int) -> DataFrame:
    """Time-based split on event day: the newest ``holdout_days`` ending ``gap_days`` before ``ds`` (the
    label maturity, or the minimum age under the ``weight`` policy) form the holdout, the ``valid_days``
    before it the validation window (early stopping), the ``train_days`` before that the training window;
    newer examples are 'recent' (labels not usable yet), older ones 'out_of_window'."""
    w = {k: (dt.date.fromisoformat(a), dt.date.fromisoformat(b))
         for k, (a, b) in split_windows(ds, gap_days, train_days, valid_days, holdout_days).items()}
    d = F.col("ds")
    split = (F.when(d > F.lit(w["holdout"][1]), "recent").when(d >= F.lit(w["holdout"][0]), "holdout")
             .when(d >= F.lit(w["valid"][0]), "valid").when(d >= F.lit(w["train"][0]), "train")
             .otherwise("out_of_window"))
    return df.withColumn("split", split)


def split_windows(ds: dt.date, gap_days: int, train_days: int, valid_days: int, holdout_days: int) -> dict:
    horizon = ds - dt.timedelta(days=gap_days)
    h0 = horizon - dt.timedelta(days=holdout_days - 1)
    v0 = h0 - dt.timedelta(days=valid_days)
    t0 = v0 - dt.timedelta(days=train_days)
    return {"train": [t0.isoformat(), (v0 - dt.timedelta(days=1)).isoformat()],
            "valid": [v0.isoformat(), (h0 - dt.timedelta(days=1)).isoformat()],
            "holdout": [h0.isoformat(), horizon.isoformat()]}


# ---------------------------------------------------------------- shell
def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    spark = get_spark(ctx.settings, "features")
    spec, p = ctx.dataset, ctx.step_params()
    src = spec.example_source
    lb = lookback_days(spec)
    silver = delta_io.read_pinned(spark, ctx.table(f"silver_{src.name}"), ctx.reads, f"silver_{src.name}")
    events = silver.where(delta_io.ds_predicate(ctx.start_ds - dt.timedelta(days=lb), ctx.ds))
    feats = compute_features(events, spec, ctx.start_ds, ctx.ds, as_of_sources(spark, ctx, ctx.start_ds, ctx.ds))
    delta_io.replace_partitions(feats, ctx.table("features"), ctx.start_ds, ctx.ds, writes=ctx.writes, name="features",
                                evolve=True)

    sp = p.get("split", {})
    train_days, valid_days, holdout_days = int(sp.get("train_days", 60)), int(sp.get("valid_days", 3)), int(sp.get("holdout_days", 4))
    young = dict(p.get("young_labels") or {"policy": "exclude"})
    policy = young.get("policy", "exclude")
    # exclude: windows end where labels are mature; weight: they reach to min_age_days before the cutoff
    gap = spec.label.maturity_days if policy == "exclude" or not spec.label.source else int(young.get("min_age_days", 1))
    first = ctx.ds - dt.timedelta(days=gap + holdout_days + valid_days + train_days)
    table = delta_io.read_pinned(spark, ctx.table("features"), ctx.reads, "features").where(delta_io.ds_predicate(first, ctx.ds))
    labels = None
    if spec.label.source:
        name = f"silver_{spec.label.source}"
        labels = delta_io.read_pinned(spark, ctx.table(name), ctx.reads, name).where(F.col("ds") <= F.lit(ctx.ds))
    cdf = label_delay_cdf(table, labels, spec, ctx.cutoff) if policy == "weight" and labels is not None else None
    ts = label_examples(table, spec, ctx.cutoff, labels, policy, cdf)
    ts = split_by_time(ts, ctx.ds, gap, train_days, valid_days, holdout_days)
    golden_path = ctx.table("golden_set")
    golden_rows = delta_io.read_pinned(spark, golden_path, ctx.reads, "golden_set") if delta_io.is_delta(spark, golden_path) else None
    ts = golden.exclude(ts, golden_rows, src.key)  # never fitted on: moved to split "golden"
    # materialised once for its counts and its write, as a local checkpoint rather than a cache: the rows are
    # kept as they are instead of encoded into compressed column batches (as etl's judged rows)
    ts = ts.withColumn("cutoff_ds", F.lit(ctx.ds)).localCheckpoint(eager=True)
    # per split and label value (binary), or labelled or not (regression: a value per row)
    by = F.col(spec.label.name) if spec.task == "binary" else F.when(F.col(spec.label.name).isNotNull(), "labelled")
    counts = {(r["split"], r["_label"]): r["count"] for r in ts.groupBy("split", by.alias("_label")).count().collect()}
    for needed in ("train", "valid", "holdout"):
        if not any(s == needed and lab is not None for (s, lab) in counts):
            raise DataError(f"training set for cutoff {ctx.ds}: no labelled examples in the {needed} window "
                            f"{split_windows(ctx.ds, gap, train_days, valid_days, holdout_days)[needed]}; "
                            f"load more history (etl/features --start-ds) or shorten params features.split")
    delta_io.replace_partitions(ts, ctx.table("training_set"), ctx.ds, ctx.ds, col="cutoff_ds",
                                writes=ctx.writes, name="training_set", evolve=True)
    ctx.counts["training_set"] = {f"{s}/{'unknown' if lab is None else lab}": n for (s, lab), n in sorted(counts.items(), key=str)}
    ctx.counts["windows"] = split_windows(ctx.ds, gap, train_days, valid_days, holdout_days)
    ctx.counts["young_labels"] = {"policy": policy, "label_delay_cdf": cdf}
    if golden_rows is None and ctx.params.get("evaluate", {}).get("golden_version", "auto") == "auto":
        version, n = golden.pin(ctx, ts)  # the first training set pins its holdout: every evaluation scores it
        ctx.counts["golden_pinned"] = {"version": version, "rows": n}
        print(f"features {spec.name} cutoff {ctx.ds}: no golden set yet; its {n} labelled holdout rows pinned as "
              f"golden_set version {version}")
    print(f"features {spec.name} cutoff {ctx.ds}: {ctx.counts['training_set']}")
    ctx.rows = sum(counts.values())
    labelled = {s: sum(n for (split, lab), n in counts.items() if split == s and lab is not None) for s in ("train", "valid", "holdout")}
    ctx.figure = "labelled examples: " + ", ".join(f"{s} {n:,}" for s, n in labelled.items())


def main(argv: list[str] | None = None) -> None:
    run_step("features", run, argv, __doc__)


if __name__ == "__main__":
    main()
