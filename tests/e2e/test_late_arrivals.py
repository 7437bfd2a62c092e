"""The same features whichever run computes them: with late-arriving events in the landing (landed 1-3 days
after their event day), the features of day D from a one-day (nightly) features run, from a 30-day range run
(a backfill) and from scoring are identical row for row; and a key landing on two days keeps one silver row."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs import etl, features, synth, validate
from jobs.common.config import Settings
from jobs.score import scoring_features
from tests.conftest import write_conf
from tests.helpers import context

START, DAYS = dt.date(2026, 9, 1), 30
END = START + dt.timedelta(days=DAYS - 1)
D = END - dt.timedelta(days=3)  # a day whose examples late events of later days would touch


@pytest.fixture(scope="module")
def lake(spark, cards, tmp_path_factory):
    root = tmp_path_factory.mktemp("late")
    settings = Settings.load(write_conf(root))
    synth.generate(synth.SynthConfig(start=START, days=DAYS, rows_per_day=400, seed=3, customers=60, late_rate=0.05,
                                     duplicate_rate=0.01), root / "landing" / "cards")
    for step in ("etl", "validate"):
        ctx = context(step, cards, settings, END.isoformat(), START.isoformat())
        (etl if step == "etl" else validate).run(ctx)
    return settings


def _rows(df, names):
    return sorted(tuple(r[c] for c in names) for r in df.select(names).collect())


def test_features_of_a_day_are_identical_from_the_nightly_run_a_range_run_and_scoring(spark, cards, lake):
    silver = spark.read.format("delta").load(f"{lake.lake}/cards/silver_transactions")
    late = silver.where((F.col("ds") > F.lit(D)) & (F.to_date("event_ts") <= F.lit(D)))
    assert late.count() > 0, "the landing must hold events of day D or before that landed after D"
    names = ["txn_id", "ds", *cards.features.names]
    params = {"features": {"split": {"train_days": 10, "valid_days": 3, "holdout_days": 3}}}
    table = f"{lake.lake}/cards/features"
    read_day = lambda: spark.read.format("delta").load(table).where(F.col("ds") == F.lit(D))  # noqa: E731

    features.run(context("features", cards, lake, END.isoformat(), START.isoformat(), params=params))  # a 30-day backfill
    ranged = _rows(read_day(), names)
    features.run(context("features", cards, lake, D.isoformat(), params=params))  # the nightly run of D (replaces it)
    nightly = _rows(read_day(), names)
    scored = _rows(scoring_features(silver, cards, D), names)
    assert len(nightly) > 300 and nightly == ranged == scored

    # not vacuous: had the late events counted for day D, some of its features would differ
    lb = dt.timedelta(days=features.lookback_days(cards))
    leaky = silver.where(F.col("ds") >= F.lit(D - lb)).withColumn("ds", F.least(F.col("ds"), F.lit(D)))
    assert _rows(features.compute_features(leaky, cards, D, D), names) != nightly


def test_one_silver_row_per_key_and_the_ledger_reconciles(spark, cards, lake):
    silver = spark.read.format("delta").load(f"{lake.lake}/cards/silver_transactions")
    assert silver.count() == silver.select("txn_id").distinct().count()
    ledger = spark.read.format("delta").load(f"{lake.lake}/cards/etl_ledger").where("source = 'transactions'").collect()
    assert all(r["balanced"] for r in ledger) and sum(r["rows_silver"] for r in ledger) == silver.count()
