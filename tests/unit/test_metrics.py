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


def _recall_at_fpr(y, s, target):
    """Reference: the best recall over thresholds at the distinct scores with FPR <= target."""
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        fpr = (pred & (y == 0)).sum() / (y == 0).sum()
        if fpr <= target:
            best = max(best, (pred & (y == 1)).sum() / (y == 1).sum())
    return best


def test_ece_and_recall_at_fixed_fpr_match_a_direct_computation(scored):
    df, y, s, _ = scored
    m = binary_metrics(df, "y", 0.5, fpr_target=0.05)[0]
    bins = np.minimum(np.floor(s * 10), 9)
    ece = sum(abs(s[bins == b].sum() - y[bins == b].sum()) for b in np.unique(bins)) / len(y)
    assert m["ece"] == pytest.approx(ece, abs=1e-12)
    assert m["recall_at_fpr"] == pytest.approx(_recall_at_fpr(y, s, 0.05), abs=1e-12)
    assert binary_metrics(df, "y", 0.5, fpr_target=1.0)[0]["recall_at_fpr"] == pytest.approx(1.0)


def test_bootstrap_intervals_cover_the_estimate_and_narrow_with_more_rows(spark):
    from jobs.metrics import bootstrap_intervals
    rng = np.random.default_rng(11)
    rows = []
    for g, n in (("small", 300), ("large", 6000)):
        y = rng.integers(0, 2, n)
        s = 1 / (1 + np.exp(-(1.5 * y - 0.75 + rng.normal(size=n))))
        rows += [(float(a), float(b), g) for a, b in zip(y, s)]
    df = spark.createDataFrame(rows, "y double, score double, g string")
    ci = bootstrap_intervals(df, "y", 0.5, ["g"], replicates=200, seed=1)
    exact = {r["g"]: r for r in binary_metrics(df, "y", 0.5, ["g"])}
    for g in ("small", "large"):
        lo, hi = ci[(g,)]["auc"]
        assert lo < exact[g]["auc"] < hi
        lo_r, hi_r = ci[(g,)]["recall"]
        assert lo_r <= exact[g]["recall"] <= hi_r
    width = {g: ci[(g,)]["auc"][1] - ci[(g,)]["auc"][0] for g in ("small", "large")}
    assert width["large"] < width["small"] / 2  # ~1/sqrt(n): 20x the rows, ~4.5x narrower
    assert ci == bootstrap_intervals(df, "y", 0.5, ["g"], replicates=200, seed=1)  # seeded


def test_regression_metrics_match_sklearn_weighted_and_per_group(spark):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from jobs.metrics import regression_metrics
    rng = np.random.default_rng(5)
    n = 500
    y = rng.normal(20, 15, n).round(1)
    s = (y + rng.normal(2, 8, n)).round(1)
    w = rng.choice([0.5, 1.0, 2.0], n)
    g = np.where(rng.random(n) < 0.4, "a", "b")
    df = spark.createDataFrame([(float(a), float(b), float(c), str(d)) for a, b, c, d in zip(y, s, w, g)],
                               "y double, score double, weight double, g string")
    [m] = regression_metrics(df, "y", weight="weight")
    assert m["n"] == n
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, s, sample_weight=w)), rel=1e-9)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, s, sample_weight=w), rel=1e-9)
    assert m["r2"] == pytest.approx(r2_score(y, s, sample_weight=w), rel=1e-9)
    assert m["mean_residual"] == pytest.approx(np.average(s - y, weights=w), rel=1e-9)
    for got in regression_metrics(df, "y", ["g"]):
        k = g == got["g"]
        assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y[k], s[k])), rel=1e-9)
        assert got["r2"] == pytest.approx(r2_score(y[k], s[k]), rel=1e-9)


def test_regression_bootstrap_intervals_cover_the_estimate_narrow_with_rows_and_are_seeded(spark):
    from jobs.metrics import regression_metrics, regression_replicates, replicate_intervals
    rng = np.random.default_rng(12)
    rows = []
    for g, n in (("small", 200), ("large", 4000)):
        y = rng.normal(10, 5, n)
        rows += [(float(a), float(a + e), g) for a, e in zip(y, rng.normal(0, 3, n))]
    df = spark.createDataFrame(rows, "y double, score double, g string")
    reps = regression_replicates(df, "y", ["g"], replicates=100, seed=2)
    assert reps[("small",)]["mae"].shape == (100,)
    ci = replicate_intervals(reps)
    exact = {r["g"]: r for r in regression_metrics(df, "y", ["g"])}
    for g in ("small", "large"):
        for metric in ("rmse", "mae", "mean_residual"):
            lo, hi = ci[(g,)][metric]
            assert lo < exact[g][metric] < hi, (g, metric)
    width = {g: ci[(g,)]["mae"][1] - ci[(g,)]["mae"][0] for g in ("small", "large")}
    assert width["large"] < width["small"] / 2.5  # ~1/sqrt(n): 20x the rows, ~4.5x narrower
    again = regression_replicates(df, "y", ["g"], replicates=100, seed=2)
    assert all(np.array_equal(again[k]["mae"], reps[k]["mae"]) for k in reps)


def test_multiclass_metrics_match_sklearn_weighted_and_per_group_with_bootstrap_intervals(spark):
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

    from jobs.metrics import multiclass_metrics, multiclass_replicates, replicate_intervals
    rng = np.random.default_rng(8)
    n, classes = 900, ["ontime", "late", "cancelled"]
    y = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    logits = rng.normal(0, 1, (n, 3)) + 1.5 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    w = rng.choice([0.5, 1.0, 2.0], n)
    g = np.where(rng.random(n) < 0.5, "a", "b")
    df = spark.createDataFrame([(float(a), [float(x) for x in p], float(c), str(d)) for a, p, c, d in zip(y, probs, w, g)],
                               "y double, probabilities array<double>, weight double, g string")
    [m] = multiclass_metrics(df, "y", classes, weight="weight")
    pred = probs.argmax(1)
    assert m["n"] == n
    assert m["logloss"] == pytest.approx(log_loss(y, probs, sample_weight=w), rel=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred, sample_weight=w), rel=1e-9)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", sample_weight=w), rel=1e-9)
    for i, c in enumerate(classes):
        assert m[f"recall[{c}]"] == pytest.approx(recall_score(y, pred, labels=[i], average=None, sample_weight=w)[0], rel=1e-9)
        assert m[f"precision[{c}]"] == pytest.approx(precision_score(y, pred, labels=[i], average=None, sample_weight=w)[0], rel=1e-9)
    for got in multiclass_metrics(df, "y", classes, ["g"]):
        k = g == got["g"]
        assert got["macro_f1"] == pytest.approx(f1_score(y[k], pred[k], average="macro"), rel=1e-9)
        assert got["logloss"] == pytest.approx(log_loss(y[k], probs[k], labels=[0, 1, 2]), rel=1e-9)
    ci = replicate_intervals(multiclass_replicates(df, "y", classes, ["g"], replicates=100, seed=1))
    for got in multiclass_metrics(df, "y", classes, ["g"]):
        for metric in ("logloss", "macro_f1", "recall[late]"):
            lo, hi = ci[(got["g"],)][metric]
            assert lo < got[metric] < hi, metric
