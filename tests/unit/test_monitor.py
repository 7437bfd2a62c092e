"""The monitor's judging, pure: a day's drift rows and signals, and the N-of-M retraining trigger with its
cooldown."""
from __future__ import annotations

import datetime as dt

import pytest

from jobs import monitor

D = dt.date(2026, 11, 10)
P = {"psi_threshold": 0.2, "js_threshold": 0.1, "wasserstein_threshold": 0.1, "min_rows": 100,
     "trigger": {"window_days": 3, "min_days": 2, "cooldown_days": 7, "drift_share": 0.2}}
REF = {"amount": {"kind": "numeric", "edges": [10.0, 20.0, 30.0], "min": 0.0, "max": 50.0, "spread": 40.0,
                  "counts": [250, 250, 250, 250], "nulls": 0, "rows": 1000},
       "channel": {"kind": "categorical", "values": ["0", "1"], "counts": [500, 500, 0], "nulls": 0, "rows": 1000},
       "day_of_week": {"kind": "categorical", "values": [str(i) for i in range(1, 8)], "counts": [100] * 7 + [0],
                       "nulls": 0, "rows": 700}}


def _day(amount, channel, dow, nulls=0):
    rows = sum(amount) + nulls
    return {"amount": {"counts": amount, "nulls": nulls, "rows": rows},
            "channel": {"counts": channel, "nulls": 0, "rows": sum(channel)},
            "day_of_week": {"counts": dow, "nulls": 0, "rows": sum(dow)}}


def _signals(**on):
    return {s: {"on": on.get(s, False), "value": None, "detail": f"{s} detail"} for s in monitor.SIGNALS}


def test_a_shifted_column_drifts_a_steady_one_does_not_and_a_one_value_calendar_day_is_not_judged():
    rows = monitor.drift_rows(REF, _day([20, 30, 250, 700], [490, 510, 0], [0, 0, 1000, 0, 0, 0, 0, 0], nulls=100), P,
                              calendar={"day_of_week"})
    drifted = {r["feature"]: r for r in rows if r["metric"] == "drifted"}
    assert drifted["amount"]["breached"] and not drifted["channel"]["breached"]
    assert drifted["day_of_week"]["value"] is None and "calendar" in drifted["day_of_week"]["detail"]
    null = next(r for r in rows if r["feature"] == "amount" and r["metric"] == "null_rate_change")
    assert null["breached"] and null["value"] == pytest.approx(100 / 1100)
    signals = monitor.day_signals(rows, P)
    assert signals["data_drift"]["on"] and signals["data_drift"]["value"] == 0.5  # 1 of the 2 judged
    assert signals["data_drift"]["detail"].startswith("1 of 2 features drifted: amount (psi ")


def test_a_missing_column_has_drifted_and_a_small_day_is_not_judged():
    rows = monitor.drift_rows({"amount": REF["amount"]}, {}, P)
    assert [(r["metric"], r["breached"]) for r in rows] == [("drifted", True)]
    small = monitor.drift_rows({"amount": REF["amount"]}, {"amount": {"counts": [5, 5, 5, 5], "nulls": 0, "rows": 20}}, P)
    assert small[0]["value"] is None and "min_rows" in small[0]["detail"]


def test_retraining_is_due_on_n_of_m_days_once_then_held_back_by_the_cooldown():
    yesterday = D - dt.timedelta(days=1)
    due, why = monitor.decide(D, _signals(data_drift=True), {yesterday: {"data_drift"}}, None, P)
    assert due and why.startswith(f"data_drift on 2 of the last 3 days ({yesterday}, {D}): data_drift detail")
    one, why = monitor.decide(D, _signals(data_drift=True), {}, None, P)
    assert not one and "no signal on 2 of the last 3 days (today: data_drift)" == why
    # different signals on different days do not add up; a day four days back is outside the window
    assert not monitor.decide(D, _signals(performance=True), {yesterday: {"data_drift"},
                                                               D - dt.timedelta(days=3): {"performance"}}, None, P)[0]
    held, why = monitor.decide(D, _signals(data_drift=True), {yesterday: {"data_drift"}}, D - dt.timedelta(days=6), P)
    assert not held and f"triggered on {D - dt.timedelta(days=6)}, within the cooldown of 7 days" in why
    assert monitor.decide(D, _signals(data_drift=True), {yesterday: {"data_drift"}}, D - dt.timedelta(days=7), P)[0]


def test_the_trigger_can_be_switched_off_or_narrowed_and_refuses_an_unknown_signal():
    yesterday = {D - dt.timedelta(days=1): {"prediction_drift"}}
    off = {**P, "trigger": {**P["trigger"], "enabled": False}}
    due, why = monitor.decide(D, _signals(prediction_drift=True), yesterday, None, off)
    assert not due and "enabled is false" in why
    narrow = {**P, "trigger": {**P["trigger"], "signals": ["performance"]}}
    assert not monitor.decide(D, _signals(prediction_drift=True), yesterday, None, narrow)[0]
    with pytest.raises(Exception, match="drift_of_the_moon"):
        monitor.decide(D, _signals(), {}, None, {**P, "trigger": {"signals": ["drift_of_the_moon"]}})


def test_a_day_without_predictions_or_matured_labels_signals_nothing_and_says_why():
    rows = [monitor._row("prediction_drift", "psi", None, "score", breached=False, detail="not compared: no predictions"),
            monitor._row("performance", "n", 0, subject=D, breached=False, detail="not judged: the day was not scored")]
    signals = monitor.day_signals(rows, P)
    assert not any(s["on"] for s in signals.values())
    assert signals["prediction_drift"]["detail"] == "not compared: no predictions"
    assert signals["data_drift"]["value"] is None and signals["performance"]["detail"] == f"day {D}: not judged: the day was not scored"
