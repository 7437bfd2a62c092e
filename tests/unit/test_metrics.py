"""Spark metrics against scikit-learn on small frames, ties and groups included."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from jobs.metrics import binary_metrics, curve_points


@pytest.fixture(scope="module")
def scored(spark):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1).round(2)  # rounding makes ties
    g = np.where(rng.random(400) < 0.5, "a", "b")
    df = spark.createDataFrame([(float(a), float(b), str(c)) for a, b, c in zip(y, s, g)], "y double, score double, g string")
    return df, y, s, g


def test_overall_matches_sklearn(scored):
    df, y, s, _ = scored
    m = binary_metrics(df, "y", 0.5)[0]
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m["logloss"] == pytest.approx(log_loss(y, np.clip(s, 1e-15, 1 - 1e-15)), rel=1e-9)
    assert m["brier"] == pytest.approx(brier_score_loss(y, s), rel=1e-9)
    pred = s >= 0.5
    assert m["tp"] == int((pred & (y == 1)).sum()) and m["fp"] == int((pred & (y == 0)).sum())


def test_per_group_matches_sklearn(scored):
    df, y, s, g = scored
    got = {r["g"]: r for r in binary_metrics(df, "y", 0.5, ["g"])}
    for k in ("a", "b"):
        assert got[k]["auc"] == pytest.approx(roc_auc_score(y[g == k], s[g == k]), abs=1e-12)
        assert got[k]["n"] == int((g == k).sum())


def test_single_class_group_has_no_auc(spark):
    df = spark.createDataFrame([(0.0, 0.2), (0.0, 0.4)], "y double, score double")
    m = binary_metrics(df, "y", 0.5)[0]
    assert m["auc"] is None and m["pr_auc"] is None and m["recall"] is None


def test_curve_points_end_at_one(scored):
    df, *_ = scored
    pts = curve_points(df, "y", bins=20)
    assert pts[-1]["tpr"] == pytest.approx(1.0) and pts[-1]["fpr"] == pytest.approx(1.0)
    assert all(a["tpr"] <= b["tpr"] for a, b in zip(pts, pts[1:]))


def test_weighted_metrics_match_sklearn_sample_weight(spark):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.25 * y + rng.random(300) * 0.75, 0, 1).round(2)
    w = np.where(y == 0, rng.choice([0.2, 0.5, 1.0], 300), 1.0)
    df = spark.createDataFrame([(float(a), float(b), float(c)) for a, b, c in zip(y, s, w)], "y double, score double, w double")
    m = binary_metrics(df, "y", 0.5, weight="w")[0]
    assert m["auc"] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-12)
    assert m["logloss"] == pytest.approx(log_loss(y, s, sample_weight=w), rel=1e-9)
    assert m["brier"] == pytest.approx(brier_score_loss(y, s, sample_weight=w), rel=1e-9)
