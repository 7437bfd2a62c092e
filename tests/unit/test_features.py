"""Point-in-time features on crafted event sequences whose values are computed by hand."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs import features
from jobs.common.config import DatasetSpec
from jobs.common.errors import ConfigError

SPEC = DatasetSpec.from_dict({
    "name": "toy",
    "sources": {
        "events": {"path": "toy/events", "key": "id", "event_time": "ts", "columns": [
            {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "card", "type": "string"},
            {"name": "shop", "type": "string"}, {"name": "amount", "type": "double"}, {"name": "grp", "type": "string"}]},
        "labels": {"path": "toy/labels", "key": "id", "event_time": "known", "columns": [
            {"name": "id", "type": "string"}, {"name": "known", "type": "timestamp"}]},
    },
    "examples": "events", "entity": "card",
    "label": {"name": "y", "source": "labels", "source_key": "id", "known_at": "known", "maturity_days": 3},
    "sensitive": ["grp"],
    "features": {
        "numeric": ["amount"],
        "derived": {"hour": "hour(ts)"},
        "aggregates": [
            {"name": "n_1h", "entity": "card", "agg": "count", "window": "1h"},
            {"name": "sum_1h", "entity": "card", "agg": "sum", "column": "amount", "window": "1h"},
            {"name": "mean_1d", "entity": "card", "agg": "mean", "column": "amount", "window": "1d"},
            {"name": "n_pair_1d", "entity": ["card", "shop"], "agg": "count", "window": "1d"},
            {"name": "shops_1d", "entity": "card", "agg": "distinct_count", "column": "shop", "window": "1d"},
        ],
        "ratios": {"amount_to_mean_1d": ["amount", "mean_1d"]},
        "recency": {"secs_since": {"entity": "card", "window": "1d"}},
        "categorical": {"shop": ["s1", "s2"]},
    },
}, "toy")

EVENTS = [  # id, ts, card, shop, amount
    ("e0", "2026-10-01 10:00:00", "A", "s1", 10.0),
    ("e1", "2026-10-01 10:30:00", "A", "s2", 20.0),
    ("e2", "2026-10-01 11:00:00", "A", "s1", 30.0),   # exactly 1h after e0: e0 is inside [t-1h, t)
    ("e3", "2026-10-01 11:00:00", "A", "s3", 40.0),   # same instant as e2: neither sees the other
    ("e4", "2026-10-01 11:00:01", "A", "s1", 50.0),   # e0 has just left the 1h window
    ("e5", "2026-10-01 10:15:00", "B", "s1", 5.0),    # another card: never mixed in
]


def _events(spark, rows=EVENTS):
    df = spark.createDataFrame([(i, dt.datetime.fromisoformat(t), c, s, a, "g") for i, t, c, s, a in rows],
                               "id string, ts timestamp, card string, shop string, amount double, grp string")
    return df.withColumn("ds", F.to_date("ts"))


def test_window_aggregates_use_only_strictly_earlier_events(spark):
    day = dt.date(2026, 10, 1)
    got = {r["id"]: r for r in features.compute_features(_events(spark), SPEC, day, day).collect()}
    assert [got[i]["n_1h"] for i in ("e0", "e1", "e2", "e3", "e4")] == [0, 1, 2, 2, 3]
    assert [got[i]["sum_1h"] for i in ("e0", "e1", "e2", "e3", "e4")] == [0, 10, 30, 30, 90]
    assert got["e4"]["mean_1d"] == pytest.approx((10 + 20 + 30 + 40) / 4)
    assert got["e0"]["mean_1d"] is None and got["e0"]["amount_to_mean_1d"] is None
    assert got["e4"]["amount_to_mean_1d"] == pytest.approx(50 / 25)
    assert [got[i]["n_pair_1d"] for i in ("e0", "e2", "e4")] == [0, 1, 2]    # card A at s1 before
    assert got["e4"]["shops_1d"] == 3
    assert got["e3"]["secs_since"] == 1800 and got["e4"]["secs_since"] == 1 and got["e0"]["secs_since"] is None
    assert got["e5"]["n_1h"] == 0 and got["e5"]["sum_1h"] == 0
    assert [got[i]["shop"] for i in ("e0", "e1", "e3")] == [0, 1, 2]        # s3 is unknown: code len(vocab)
    assert got["e0"]["attr_grp"] == "g"


def test_late_arriving_history_is_seen_only_if_in_silver(spark):
    """Features for day 2 read day 1 from the lookback; an event that is not in silver does not exist."""
    rows = EVENTS + [("f0", "2026-10-02 10:20:00", "A", "s1", 1.0)]
    d2 = dt.date(2026, 10, 2)
    got = {r["id"]: r for r in features.compute_features(_events(spark, rows), SPEC, d2, d2).collect()}
    assert list(got) == ["f0"]
    assert got["f0"]["mean_1d"] == pytest.approx((20 + 30 + 40 + 50) / 4)  # [day1 10:20, day2 10:20): not e0


def test_an_example_sees_only_events_landed_by_its_own_day_whichever_run_computes_it(spark):
    """A late arrival (event on day 1, landed on day 3) is invisible to day 2's examples, in a one-day run
    and in a range run over days 1-3 alike; day 3's examples see it."""
    d1, d2, d3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)
    rows = [("e0", "2026-10-01 10:00:00", "A", "s1", 10.0, d1), ("x", "2026-10-01 12:00:00", "A", "s1", 1000.0, d3),
            ("f0", "2026-10-02 10:00:00", "A", "s2", 20.0, d2), ("g0", "2026-10-02 11:30:00", "A", "s1", 30.0, d3),
            ("h0", "2026-10-02 11:00:00", "B", "s1", 5.0, d2)]
    ev = spark.createDataFrame([(i, dt.datetime.fromisoformat(t), c, s, a, "g", d) for i, t, c, s, a, d in rows],
                               "id string, ts timestamp, card string, shop string, amount double, grp string, ds date")
    names = ["id", "ds", *SPEC.features.names]
    one_day = {d: {r["id"]: r.asDict() for r in features.compute_features(ev.where(F.col("ds") <= d), SPEC, d, d)
                   .select(names).collect()} for d in (d1, d2, d3)}
    ranged = {r["id"]: r.asDict() for r in features.compute_features(ev, SPEC, d1, d3).select(names).collect()}
    assert one_day[d2]["f0"]["mean_1d"] == 10.0 and one_day[d2]["f0"]["secs_since"] == 86400  # x not landed yet
    assert one_day[d3]["g0"]["mean_1d"] == pytest.approx((1000 + 20) / 2)  # landed with x on day 3: sees it
    assert ranged == {**one_day[d1], **one_day[d2], **one_day[d3]}


def test_recency_looks_back_over_its_window_only(spark):
    rows = [("e0", "2026-10-01 10:00:00", "A", "s1", 1.0), ("e1", "2026-10-02 10:00:01", "A", "s1", 1.0),
            ("e2", "2026-10-02 11:00:00", "A", "s1", 1.0)]
    got = {r["id"]: r["secs_since"] for r in features.compute_features(
        _events(spark, rows), SPEC, dt.date(2026, 10, 1), dt.date(2026, 10, 2)).collect()}
    assert got == {"e0": None, "e1": None, "e2": 3599.0}  # e0 is 1 day and 1 s before e1: outside the 1d window
    with pytest.raises(ConfigError, match="recency.r needs an entity and a bounded window"):
        DatasetSpec.from_dict({**_spec_dict(), "features": {"recency": {"r": "card"}}})


def test_labels_join_only_if_known_by_the_cutoff(spark):
    cutoff = dt.datetime(2026, 10, 11)
    feats = spark.createDataFrame(
        [("old_pos", dt.datetime(2026, 10, 1, 9)), ("late_pos", dt.datetime(2026, 10, 2, 9)),
         ("old_neg", dt.datetime(2026, 10, 3, 9)), ("young_neg", dt.datetime(2026, 10, 9, 9)),
         ("young_pos", dt.datetime(2026, 10, 10, 9))], "id string, ts timestamp")
    labels = spark.createDataFrame(
        [("old_pos", dt.datetime(2026, 10, 5)), ("late_pos", dt.datetime(2026, 10, 11)),   # arrives at the cutoff
         ("young_pos", dt.datetime(2026, 10, 10, 23, 59, 59))], "id string, known timestamp")
    got = {r["id"]: (r["y"], r["label_status"]) for r in features.label_examples(feats, SPEC, cutoff, labels).collect()}
    assert got == {"old_pos": (1, "known"), "late_pos": (0, "known"), "old_neg": (0, "known"),
                   "young_neg": (None, "unknown"), "young_pos": (1, "known")}


def test_time_split_windows():
    w = features.split_windows(dt.date(2026, 10, 30), gap_days=10, train_days=5, valid_days=3, holdout_days=4)
    assert w == {"holdout": ["2026-10-17", "2026-10-20"], "valid": ["2026-10-14", "2026-10-16"],
                 "train": ["2026-10-09", "2026-10-13"]}


def test_split_by_time_labels_each_day(spark):
    days = spark.createDataFrame([(dt.date(2026, 10, d),) for d in range(1, 31)], "ds date")
    got = {r["ds"].day: r["split"] for r in features.split_by_time(days, dt.date(2026, 10, 30), 10, 5, 3, 4).collect()}
    assert got[8] == "out_of_window" and got[9] == "train" and got[14] == "valid" and got[17] == "holdout"
    assert got[20] == "holdout" and got[21] == "recent"


def test_bad_window_and_aggregate_are_config_errors(spark):
    with pytest.raises(ConfigError, match="feature window '3 weeks'"):
        features.window_seconds("3 weeks")
    bad = DatasetSpec.from_dict({**_spec_dict(), "features": {"aggregates": [{"name": "x", "entity": "card", "agg": "median", "window": "1h"}]}})
    with pytest.raises(ConfigError, match="feature 'x': unknown aggregate 'median'"):
        features.compute_features(_events(spark), bad, dt.date(2026, 10, 1), dt.date(2026, 10, 1))


def _spec_dict():
    return {"name": "toy", "sources": {"events": {"path": "p", "key": "id", "event_time": "ts", "columns": [
        {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "card", "type": "string"}]}},
        "examples": "events", "label": {"name": "y", "column": "id", "positive_values": ["1"]}}


def test_training_and_scoring_paths_give_identical_features(spark):
    """The features step computes a range in one go; scoring computes the newest day alone from its
    lookback. For the rows of that day both must be identical, value for value."""
    from jobs.score import scoring_features
    rows = [(f"x{d}{h}", f"2026-10-0{d} {h:02d}:{m:02d}:00", card, shop, float(d * h + m))
            for d in (1, 2, 3) for h in (1, 9, 23) for m, card, shop in ((5, "A", "s1"), (40, "A", "s2"), (41, "B", "s1"))]
    events = _events(spark, rows)
    training = features.compute_features(events, SPEC, dt.date(2026, 10, 1), dt.date(2026, 10, 3)).where("ds = DATE'2026-10-03'")
    serving = scoring_features(events, SPEC, dt.date(2026, 10, 3))
    assert serving.count() == 9
    assert sorted(map(tuple, training.collect())) == sorted(map(tuple, serving.collect()))


def _leaky_spec(features_block, label=None):
    return DatasetSpec.from_dict({
        "name": "leaky", "examples": "events", "entity": "card",
        "sources": {"events": {"path": "p", "key": "id", "event_time": "ts", "columns": [
            {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "card", "type": "string"},
            {"name": "amount", "type": "double"}, {"name": "outcome", "type": "string"},
            {"name": "refunded", "type": "double", "known_at": "refund_ts"}, {"name": "refund_ts", "type": "timestamp"}]}},
        "label": label or {"name": "y", "column": "outcome", "positive_values": ["bad"]},
        "features": features_block})


def _leaky_events(spark):
    df = spark.createDataFrame([("a", dt.datetime(2026, 10, 1, 10), "A", 5.0, "bad", 5.0, dt.datetime(2026, 10, 4)),
                                ("b", dt.datetime(2026, 10, 1, 11), "A", 7.0, "ok", None, None)],
                               "id string, ts timestamp, card string, amount double, outcome string, refunded double, refund_ts timestamp")
    return df.withColumn("ds", F.to_date("ts"))


@pytest.mark.parametrize("block, message", [
    ({"derived": {"was_refunded": "cast(refunded > 0 as int)"}},
     "feature 'was_refunded' reads 'refunded', which becomes known at 'refund_ts', not before the example's time 'ts'"),
    ({"derived": {"looks_bad": "cast(outcome = 'bad' as int)"}}, r"feature 'looks_bad' reads the label \(\['outcome'"),
    ({"aggregates": [{"name": "per_refund", "entity": "refunded", "agg": "count", "window": "30d"}]},
     "feature 'per_refund' reads 'refunded', which becomes known at 'refund_ts'"),  # an entity must be known
])
def test_leakage_canary_is_refused_naming_the_feature(spark, block, message):
    from jobs.common.errors import LeakageError
    with pytest.raises(LeakageError, match=message):
        features.compute_features(_leaky_events(spark), _leaky_spec(block), dt.date(2026, 10, 1), dt.date(2026, 10, 1))


def test_an_aggregate_over_a_late_known_column_counts_a_row_only_if_known_strictly_before_the_example(spark):
    """refunded becomes known at refund_ts. Hand-computed per example (card A; B is another card):
    a 10:00 (5, known 10:30): nothing earlier                                         -> n 0, sum 0, max_2h null
    i 10:05 (9, never known): a not known yet                                          -> n 0
    b 10:10 (7, known 11:00): a not known yet (10:30)                                  -> n 0
    c 11:00 (none): a known; b known exactly at t: excluded                           -> n 1, sum 5, max 5
    d 11:00:01 (none): a, b known                                                      -> n 2, sum 12, max 7
    e 12:00 (3, known day 2 09:00): a (at t - 2h: inside), b known; e's own value later -> n 2, sum 12, max 7
    g day 1 13:00 (4, known 14:00) landed on day 2: invisible to day 1's examples; itself a day-2 example:
      a, b known; e (inside 2h) not known until day 2                                  -> n 2, sum 12, max null
    h day 1 15:00: a, b (e not known yet, g not landed)                                -> n 2, sum 12, max null
    f day 2 10:00: a at exactly t - 1d (inside), b, e (known 09:00), g (landed day 2)  -> n 4, sum 19, max null"""
    spec = _leaky_spec({"aggregates": [
        {"name": "refunds_n_1d", "entity": "card", "agg": "count", "column": "refunded", "window": "1d"},
        {"name": "refunds_sum_1d", "entity": "card", "agg": "sum", "column": "refunded", "window": "1d"},
        {"name": "refund_max_2h", "entity": "card", "agg": "max", "column": "refunded", "window": "2h"},
        {"name": "n_1d", "entity": "card", "agg": "count", "window": "1d"}]})
    d1, d2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)
    t = lambda day, hms: dt.datetime.combine(day, dt.time.fromisoformat(hms))  # noqa: E731
    rows = [("a", t(d1, "10:00"), "A", 5.0, t(d1, "10:30"), d1), ("i", t(d1, "10:05"), "A", 9.0, None, d1),
            ("b", t(d1, "10:10"), "A", 7.0, t(d1, "11:00"), d1), ("c", t(d1, "11:00"), "A", None, None, d1),
            ("d", t(d1, "11:00:01"), "A", None, None, d1), ("e", t(d1, "12:00"), "A", 3.0, t(d2, "09:00"), d1),
            ("g", t(d1, "13:00"), "A", 4.0, t(d1, "14:00"), d2), ("h", t(d1, "15:00"), "A", None, None, d1),
            ("f", t(d2, "10:00"), "A", None, None, d2), ("x", t(d1, "09:00"), "B", 100.0, t(d1, "09:01"), d1)]
    events = spark.createDataFrame([(i, ts, c, 1.0, "ok", v, k, ds) for i, ts, c, v, k, ds in rows],
                                   "id string, ts timestamp, card string, amount double, outcome string, "
                                   "refunded double, refund_ts timestamp, ds date")
    want = {"a": (0, 0, None), "i": (0, 0, None), "b": (0, 0, None), "c": (1, 5, 5), "d": (2, 12, 7), "e": (2, 12, 7),
            "h": (2, 12, None), "f": (4, 19, None), "g": (2, 12, None)}
    ranged = {r["id"]: r for r in features.compute_features(events, spec, d1, d2).collect()}
    one_day = {r["id"]: r for d in (d1, d2)
               for r in features.compute_features(events.where(F.col("ds") <= d), spec, d, d).collect()}
    for got in (ranged, one_day):
        assert {k: (r["refunds_n_1d"], r["refunds_sum_1d"], r["refund_max_2h"]) for k, r in got.items() if k != "x"} == want
        assert got["x"]["refunds_n_1d"] == 0  # card B's own refund is not its past
        assert got["f"]["n_1d"] == 8 and got["h"]["n_1d"] == 6  # plain counts: every earlier landed row, known or not


def test_a_late_column_known_before_the_event_is_allowed(spark):
    ok = _leaky_events(spark).withColumn("refund_ts", F.col("ts") - F.expr("INTERVAL 1 HOURS"))
    out = features.compute_features(ok, _leaky_spec({"derived": {"was_refunded": "coalesce(refunded, 0)"}}),
                                    dt.date(2026, 10, 1), dt.date(2026, 10, 1))
    assert sorted(r["was_refunded"] for r in out.collect()) == [0.0, 5.0]


def _label_frames(spark):
    feats = spark.createDataFrame(
        [("old_pos", dt.datetime(2026, 10, 1, 9)), ("old_neg", dt.datetime(2026, 10, 2, 9)),
         ("young_pos", dt.datetime(2026, 10, 9, 9)), ("young_neg1", dt.datetime(2026, 10, 9, 9)),
         ("young_neg2", dt.datetime(2026, 10, 10, 9))], "id string, ts timestamp")
    labels = spark.createDataFrame([("old_pos", dt.datetime(2026, 10, 2, 12)), ("young_pos", dt.datetime(2026, 10, 10))],
                                   "id string, known timestamp")
    return feats, labels


def test_label_delay_cdf_from_mature_positives(spark):
    feats, labels = _label_frames(spark)
    cdf = features.label_delay_cdf(feats, labels, SPEC, dt.datetime(2026, 10, 11))
    assert cdf == [0.0, 1.0, 1.0, 1.0]   # maturity 3 days; the one mature positive arrived after 1 day


def test_weight_policy_weights_young_negatives_by_the_delay_cdf(spark):
    feats, labels = _label_frames(spark)
    cdf = [0.0, 0.5, 0.8, 1.0]
    out = features.label_examples(feats, SPEC, dt.datetime(2026, 10, 11), labels, "weight", cdf)
    got = {r["id"]: (r["y"], r["weight"], r["label_status"]) for r in out.collect()}
    assert got == {"old_pos": (1, 1.0, "known"), "old_neg": (0, 1.0, "known"), "young_pos": (1, 1.0, "known"),
                   "young_neg1": (0, 0.5, "weighted"),     # 1 day 15 h old: F(1)
                   "young_neg2": (0, 0.0, "weighted")}     # 15 h old: F(0)
    excluded = {r["id"]: r["y"] for r in features.label_examples(feats, SPEC, dt.datetime(2026, 10, 11), labels).collect()}
    assert excluded["young_neg1"] is None and excluded["young_pos"] == 1
    with pytest.raises(ConfigError, match="young_labels 'guess'"):
        features.label_examples(feats, SPEC, dt.datetime(2026, 10, 11), labels, "guess")


def test_a_label_expression_labels_each_example_known_by_the_cutoff(spark):
    spec = DatasetSpec.from_dict({
        "name": "flights", "examples": "flights", "entity": "plane",
        "sources": {"flights": {"path": "p", "key": "id", "event_time": "ts", "columns": [
            {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "plane", "type": "string"},
            {"name": "arr_delay", "type": "double"}]}},
        "label": {"name": "delayed", "expr": "arr_delay > 15"},
        "features": {"aggregates": [{"name": "plane_flights_24h", "entity": "plane", "agg": "count", "window": "24h"}]}})
    events = spark.createDataFrame([("a", dt.datetime(2026, 10, 1, 8), "P", 40.0), ("b", dt.datetime(2026, 10, 1, 12), "P", 15.0),
                                    ("c", dt.datetime(2026, 10, 2, 9), "P", 0.0)],
                                   "id string, ts timestamp, plane string, arr_delay double").withColumn("ds", F.to_date("ts"))
    feats = features.compute_features(events, spec, dt.date(2026, 10, 1), dt.date(2026, 10, 2))
    assert "delayed__value" in feats.columns and "arr_delay" not in feats.columns  # the outcome is no feature
    out = {r["id"]: (r["delayed"], r["label_status"]) for r in
           features.label_examples(feats, spec, dt.datetime(2026, 10, 2), None).collect()}
    assert out == {"a": (1, "known"), "b": (0, "known"), "c": (None, "unknown")}  # c: after the cutoff
    from jobs.common.errors import LeakageError
    leaky = DatasetSpec.from_dict({"name": "f", "examples": "flights",
                                   "sources": {"flights": {"path": "p", "key": "id", "event_time": "ts", "columns": [
                                       {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"},
                                       {"name": "plane", "type": "string"}, {"name": "arr_delay", "type": "double"}]}},
                                   "label": {"name": "delayed", "expr": "arr_delay > 15"},
                                   "features": {"numeric": ["arr_delay"]}})
    with pytest.raises(LeakageError, match=r"feature 'arr_delay' reads the label \(\['arr_delay'\]\)"):
        features.compute_features(events, leaky, dt.date(2026, 10, 1), dt.date(2026, 10, 2))


def test_a_regression_label_is_the_expressions_number_and_a_boolean_one_is_refused(spark):
    doc = {"name": "flights", "examples": "flights", "entity": "plane", "task": "regression",
           "sources": {"flights": {"path": "p", "key": "id", "event_time": "ts", "columns": [
               {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "plane", "type": "string"},
               {"name": "arr_delay", "type": "double"}]}},
           "label": {"name": "delay_min", "expr": "arr_delay"}, "features": {"derived": {"hour": "hour(ts)"}}}
    events = spark.createDataFrame([("a", dt.datetime(2026, 10, 1, 8), "P", 40.5), ("b", dt.datetime(2026, 10, 1, 12), "P", -3.0)],
                                   "id string, ts timestamp, plane string, arr_delay double").withColumn("ds", F.to_date("ts"))
    day = dt.date(2026, 10, 1)
    spec = DatasetSpec.from_dict(doc)
    feats = features.compute_features(events, spec, day, day)
    out = {r["id"]: r["delay_min"] for r in features.label_examples(feats, spec, dt.datetime(2026, 10, 2), None).collect()}
    assert out == {"a": 40.5, "b": -3.0}
    with pytest.raises(ConfigError, match=r"label.expr 'arr_delay > 15' gives boolean values; a regression label is a number"):
        features.compute_features(events, DatasetSpec.from_dict({**doc, "label": {"name": "d", "expr": "arr_delay > 15"}}), day, day)


def test_a_multiclass_label_is_its_class_index_and_an_unknown_value_none(spark):
    doc = {"name": "flights", "examples": "flights", "entity": "plane", "task": "multiclass",
           "sources": {"flights": {"path": "p", "key": "id", "event_time": "ts", "columns": [
               {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "plane", "type": "string"},
               {"name": "arr_delay", "type": "double"}]}},
           "label": {"name": "status", "classes": ["ontime", "late", "cancelled"],
                     "expr": "CASE WHEN arr_delay IS NULL THEN 'cancelled' WHEN arr_delay > 15 THEN 'late' "
                             "WHEN arr_delay > -60 THEN 'ontime' ELSE 'diverted' END"},
           "features": {"derived": {"hour": "hour(ts)"}}}
    rows = [("a", 40.0), ("b", 3.0), ("c", None), ("d", -90.0)]
    events = spark.createDataFrame([(i, dt.datetime(2026, 10, 1, 8 + n), "P", v) for n, (i, v) in enumerate(rows)],
                                   "id string, ts timestamp, plane string, arr_delay double").withColumn("ds", F.to_date("ts"))
    day, spec = dt.date(2026, 10, 1), DatasetSpec.from_dict(doc)
    feats = features.compute_features(events, spec, day, day)
    out = {r["id"]: r["status"] for r in features.label_examples(feats, spec, dt.datetime(2026, 10, 2), None).collect()}
    assert out == {"a": 1, "b": 0, "c": 2, "d": None}  # 'diverted' is no class: the ETL quarantines it (unknown_label)


def test_a_learned_categorical_keeps_its_raw_value_in_the_features_a_fixed_one_its_code(spark):
    spec = DatasetSpec.from_dict({
        "name": "flights", "examples": "flights", "entity": "plane",
        "sources": {"flights": {"path": "p", "key": "id", "event_time": "ts", "columns": [
            {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "plane", "type": "string"},
            {"name": "dest", "type": "string"}, {"name": "carrier", "type": "string"}, {"name": "arr_delay", "type": "double"}]}},
        "label": {"name": "delayed", "expr": "arr_delay > 15"},
        "features": {"categorical": {"dest": {"top": 100, "min_count": 5}, "carrier": ["AA", "UA"]}}})
    events = spark.createDataFrame([("a", dt.datetime(2026, 10, 1, 8), "P", "JFK", "UA", 1.0)],
                                   "id string, ts timestamp, plane string, dest string, carrier string, arr_delay double")
    [row] = features.compute_features(events.withColumn("ds", F.to_date("ts")), spec, dt.date(2026, 10, 1),
                                      dt.date(2026, 10, 1)).collect()
    assert (row["dest"], row["carrier"]) == ("JFK", 1)  # learned per training set (jobs.model.encode); fixed: coded here


AS_OF_SPEC = {
    "name": "flights", "examples": "flights", "entity": "plane",
    "sources": {
        "flights": {"path": "p", "key": "id", "event_time": "ts", "columns": [
            {"name": "id", "type": "string"}, {"name": "ts", "type": "timestamp"}, {"name": "plane", "type": "string"},
            {"name": "origin", "type": "string"}, {"name": "arr_delay", "type": "double"}]},
        "weather": {"path": "w", "key": "obs_id", "event_time": "obs_ts", "columns": [
            {"name": "obs_id", "type": "string"}, {"name": "obs_ts", "type": "timestamp"}, {"name": "airport", "type": "string"},
            {"name": "wind_kt", "type": "double"}]}},
    "label": {"name": "delayed", "expr": "arr_delay > 15"},
    "features": {"as_of": {"origin_weather": {"source": "weather", "keys": {"origin": "airport"}, "max_age": "6h",
                                              "columns": {"wind_kt": "origin_wind_kt"}}}}}


def test_an_as_of_join_takes_the_latest_row_strictly_before_the_example_within_max_age_landed_by_its_day(spark):
    """Hand-computed, every boundary: a reading at exactly t is not seen; one at exactly t - max_age is; one
    older is not; a reading landed after the example's day is not seen by that day's example (a range run and
    the one-day run of that day agree), and is seen by the next day's."""
    spec = DatasetSpec.from_dict(AS_OF_SPEC)
    assert spec.features.names == ["origin_wind_kt"] and features.lookback_days(spec) == 1
    t = lambda d, h, m=0, s=0: dt.datetime(2026, 10, d, h, m, s)  # noqa: E731
    flights = spark.createDataFrame(
        [("a", t(2, 10), "P1", "JFK", 1.0, "2026-10-02"), ("b", t(2, 10), "P2", "SFO", 1.0, "2026-10-02"),
         ("c", t(2, 10), "P3", "ORD", 1.0, "2026-10-02"), ("d", t(2, 10), "P4", "BOS", 1.0, "2026-10-02"),
         ("e", t(3, 10), "P3", "ORD", 1.0, "2026-10-03"), ("f", t(2, 2), "P5", "JFK", 1.0, "2026-10-02"),
         ("g", t(2, 11), "P6", "ORD", 1.0, "2026-10-03")],  # g landed a day late: it sees what had landed by day 3
        "id string, ts timestamp, plane string, origin string, arr_delay double, ds string").withColumn("ds", F.to_date("ds"))
    weather = spark.createDataFrame([
        ("j1", t(2, 4), "JFK", 10.0, "2026-10-02"), ("j2", t(2, 9, 30), "JFK", 12.0, "2026-10-02"),
        ("j3", t(2, 10), "JFK", 99.0, "2026-10-02"),                                  # at exactly t: not before it
        ("j0", t(1, 21), "JFK", 7.0, "2026-10-01"),                                   # the day before, within 6h of f
        ("s1", t(2, 3, 59, 59), "SFO", 20.0, "2026-10-02"),                           # 6 h 1 s before b: too old
        ("o1", t(2, 8), "ORD", 30.0, "2026-10-02"), ("o2", t(2, 9), "ORD", 31.0, "2026-10-03"),  # o2 landed a day late
        ("o3", t(3, 9, 59, 59), "ORD", 32.0, "2026-10-03"),
        ("b1", t(2, 4), "BOS", 40.0, "2026-10-02")],                                 # exactly t - max_age: seen
        "obs_id string, obs_ts timestamp, airport string, wind_kt double, ds string").withColumn("ds", F.to_date("ds"))
    d2, d3 = dt.date(2026, 10, 2), dt.date(2026, 10, 3)
    ranged = {r["id"]: r["origin_wind_kt"] for r in
              features.compute_features(flights, spec, d2, d3, {"weather": weather}).collect()}
    # c (day 2) does not see o2, landed on day 3; g, landed on day 3 too, does
    assert ranged == {"a": 12.0, "b": None, "c": 30.0, "d": 40.0, "e": 32.0, "f": 7.0, "g": 31.0}
    for day in (d2, d3):  # scoring each day alone from what had landed by then: the same values
        landed = lambda df: df.where(F.col("ds") <= F.lit(day))  # noqa: E731
        alone = {r["id"]: r["origin_wind_kt"] for r in features.compute_features(
            landed(flights), spec, day, day, {"weather": landed(weather)}).collect()}
        assert alone == {k: v for k, v in ranged.items() if k in alone} and len(alone) == (5 if day == d2 else 2)
