"""The gate: checks, modes and the blessing document (pure functions)."""
from __future__ import annotations

import pytest

from jobs.common.errors import ConfigError
from jobs.evaluate import bless, fairness_summary, gate

P = {"min_auc": 0.75, "max_auc_drop_vs_champion": 0.01, "max_slice_auc_gap": 0.1}
SLICES = [{"attribute": "sex", "value": "F", "n": 500, "n_pos": 50, "auc": 0.9, "predicted_positive_rate": 0.1, "recall": 0.6, "fpr": 0.05},
          {"attribute": "sex", "value": "M", "n": 500, "n_pos": 60, "auc": 0.7, "predicted_positive_rate": 0.3, "recall": 0.9, "fpr": 0.2},
          {"attribute": "sex", "value": "X", "n": 5, "n_pos": 1, "auc": 0.1, "predicted_positive_rate": 0.9, "recall": 0.0, "fpr": 0.9},
          {"attribute": "sex", "value": "U", "n": 300, "n_pos": 2, "auc": 0.2, "predicted_positive_rate": 0.25, "recall": 1.0, "fpr": 0.24}]


def test_fairness_ignores_small_slices():
    [f] = fairness_summary(SLICES, min_size=100, min_class_count=10)
    assert f["slices"] == 3 and f["auc_gap"] == pytest.approx(0.2)           # U: too few positives for an AUC
    assert f["demographic_parity_difference"] == pytest.approx(0.2)
    assert f["disparate_impact_ratio"] == pytest.approx(0.1 / 0.3)
    assert f["equal_opportunity_difference"] == pytest.approx(0.3)          # F vs M; U has 2 positives: left out
    assert f["equal_opportunity_difference_between"] == "M vs F"
    assert f["equalized_odds_difference"] == pytest.approx(0.3)             # max(TPR spread 0.3, FPR spread 0.19)


def test_unfair_challenger_is_refused_naming_the_fairness_metric_and_warnings_do_not_refuse():
    p = {"min_auc": 0.75, "max_equal_opportunity_difference": 0.2, "min_disparate_impact_ratio": 0.8,
         "warn_only": ["min_disparate_impact_ratio"]}
    b = bless(gate({"auc": 0.9}, None, fairness_summary(SLICES, 100, 10), p), "enabled", "abc")
    assert not b["blessed"] and b["failed"] == ["equal_opportunity_difference[sex]"]
    assert b["warnings"] == ["disparate_impact_ratio[sex]"]
    sev = {c["name"]: c["severity"] for c in b["checks"]}
    assert sev == {"auc": "blocking", "equal_opportunity_difference[sex]": "blocking", "disparate_impact_ratio[sex]": "warning"}
    fair = {**p, "max_equal_opportunity_difference": 0.5}
    ok = bless(gate({"auc": 0.9}, None, fairness_summary(SLICES, 100, 10), fair), "enabled", "abc")
    assert ok["blessed"] and ok["warnings"] == ["disparate_impact_ratio[sex]"] and "warnings: disparate_impact_ratio[sex]" in ok["reasons"]


def test_worse_than_champion_and_unfair_is_refused_with_each_check_named():
    checks = gate({"auc": 0.80}, {"overall": {"auc": 0.85}}, fairness_summary(SLICES, 100), P)
    b = bless(checks, "enabled", "abc")
    assert not b["blessed"]
    assert b["failed"] == ["auc_minus_champion_auc", "auc_gap[sex]"]
    assert {c["name"]: c["passed"] for c in b["checks"]} == {"auc": True, "auc_minus_champion_auc": False, "auc_gap[sex]": False}
    assert all({"value", "threshold", "op", "passed"} <= set(c) for c in b["checks"])


def test_dry_run_reports_but_blesses_and_disabled_skips():
    checks = gate({"auc": 0.5}, None, [], P)
    dry = bless(checks, "dry_run", "abc")
    assert dry["blessed"] and dry["failed"] == ["auc"]
    off = bless(checks, "disabled", "abc")
    assert off["blessed"] and off["checks"] == [] and off["reasons"] == ["gate disabled"]


def test_missing_metric_fails_its_check_and_bad_mode_is_refused():
    [c] = gate({"auc": None}, None, [], {"min_auc": 0.7})
    assert c["passed"] is False
    with pytest.raises(ConfigError, match="gate.mode 'yolo'"):
        bless([], "yolo", "abc")


def test_leakage_guards_flag_a_too_good_model_and_a_dominant_feature():
    p = {"max_auc": 0.995, "max_top_feature_share": 0.8}
    checks = gate({"auc": 0.9991}, None, [], p, {"leaky": 90.0, "amount": 5.0, "hour": 5.0})
    assert [(c["name"], c["passed"]) for c in checks] == [("auc_below_leakage_ceiling", False),
                                                           ("top_feature_gain_share[leaky]", False)]
    ok = gate({"auc": 0.93}, None, [], p, {"a": 40.0, "b": 60.0})
    assert all(c["passed"] for c in ok)


def test_fairness_gaps_get_bootstrap_intervals_and_the_gate_decides_on_them():
    import numpy as np
    rng = np.random.default_rng(0)
    rows = [{"attribute": "g", "value": v, "n": 400, "n_pos": 30, "n_neg": 370, "auc": 0.8, "predicted_positive_rate": 0.1,
             "recall": r, "fpr": 0.05} for v, r in (("a", 0.50), ("b", 0.78))]
    # noisy: 30 positives per slice, so a 0.28 TPR gap is within resampling noise of no gap
    noisy = {("g", v): {"recall": np.clip(rng.normal(0.64, 0.09, 400), 0, 1), "fpr": rng.normal(0.05, 0.01, 400),
                        "auc": rng.normal(0.8, 0.03, 400), "predicted_positive_rate": rng.normal(0.1, 0.01, 400)}
             for v in ("a", "b")}
    [f] = fairness_summary(rows, 100, 20, noisy)
    lo, hi = f["equal_opportunity_difference_ci"]
    assert lo < 0.2 < hi and f["equal_opportunity_difference"] == pytest.approx(0.28)
    [c] = gate({}, None, [f], {"max_equal_opportunity_difference": 0.2})
    assert c["passed"] and c["decided_on"] == "ci_lower" and c["ci"] == [lo, hi]
    # precise: the same point gap with tight replicates is a real gap and refuses
    tight = {("g", "a"): {**noisy[("g", "a")], "recall": rng.normal(0.50, 0.01, 400)},
             ("g", "b"): {**noisy[("g", "b")], "recall": rng.normal(0.78, 0.01, 400)}}
    [f2] = fairness_summary(rows, 100, 20, tight)
    [c2] = gate({}, None, [f2], {"max_equal_opportunity_difference": 0.2})
    assert not c2["passed"] and f2["equal_opportunity_difference_ci"][0] > 0.2


def test_a_regression_is_gated_on_its_own_metrics_the_champions_rmse_and_its_error_spreads():
    from jobs.evaluate import regression_fairness
    p = {"min_auc": 0.75, "min_r2": 0.0, "max_r2": 0.995, "max_rmse": None, "max_rmse_rise_vs_champion": 0.01,
         "max_slice_mae_gap": 5.0, "max_slice_mean_residual_gap": None, "max_golden_rmse_rise_vs_champion": 0.02}
    slices = [{"attribute": "carrier", "value": v, "n": 500, "mae": mae, "mean_residual": res}
              for v, mae, res in (("AA", 8.0, 1.0), ("DL", 14.5, -3.0), ("UA", 9.0, 0.5), ("tiny", 40.0, 9.0))]
    slices[-1]["n"] = 10  # under the minimum size: not in the spread
    fairness = regression_fairness(slices, min_size=100)
    assert fairness == [{"attribute": "carrier", "slices": 3, "mae_gap": 6.5, "mae_gap_between": "DL vs AA",
                         "mean_residual_gap": 4.0, "mean_residual_gap_between": "AA vs DL"}]
    checks = gate({"rmse": 12.2, "mae": 9.0, "r2": 0.41}, {"overall": {"rmse": 12.0}}, fairness, p, task="regression",
                  golden={"version": 0, "metric": "rmse", "challenger_rmse": 11.0, "champion_rmse": 11.5})
    by = {c["name"]: c for c in checks}
    assert set(by) == {"r2", "r2_below_leakage_ceiling", "rmse_over_champion_rmse_minus_1",
                       "golden_rmse_over_champion_minus_1[v0]", "mae_gap[carrier]"}  # no AUC bar, no null bar
    assert by["rmse_over_champion_rmse_minus_1"]["value"] == pytest.approx(12.2 / 12.0 - 1)
    assert not by["rmse_over_champion_rmse_minus_1"]["passed"] and by["golden_rmse_over_champion_minus_1[v0]"]["passed"]
    assert not by["mae_gap[carrier]"]["passed"] and by["r2"]["passed"]
    assert bless(checks, "enabled", "sha")["failed"] == ["rmse_over_champion_rmse_minus_1", "mae_gap[carrier]"]


def test_a_multiclass_model_is_gated_on_log_loss_macro_f1_and_its_largest_recall_gap():
    from jobs.evaluate import multiclass_fairness
    slices = [{"attribute": "carrier", "value": v, "n": 400, "macro_f1": f1, "recall[ontime]": a, "recall[late]": b}
              for v, f1, a, b in (("AA", 0.70, 0.90, 0.50), ("DL", 0.62, 0.88, 0.30), ("UA", 0.66, 0.93, 0.42))]
    [fair] = multiclass_fairness(slices, min_size=100, classes=["ontime", "late"])
    assert fair["recall_gap"] == pytest.approx(0.20) and fair["recall_gap_class"] == "late"
    assert fair["recall_gap[ontime]"] == pytest.approx(0.05) and fair["macro_f1_gap"] == pytest.approx(0.08)
    p = {"min_auc": 0.75, "min_macro_f1": 0.5, "max_logloss": None, "max_logloss_rise_vs_champion": 0.01,
         "max_slice_recall_gap": 0.25, "max_slice_macro_f1_gap": 0.05}
    checks = gate({"logloss": 0.61, "macro_f1": 0.66, "accuracy": 0.8}, {"overall": {"logloss": 0.60}}, [fair], p,
                  task="multiclass")
    by = {c["name"]: c for c in checks}
    assert set(by) == {"macro_f1", "logloss_over_champion_logloss_minus_1", "recall_gap[carrier]", "macro_f1_gap[carrier]"}
    assert by["macro_f1"]["passed"] and by["recall_gap[carrier]"]["passed"]
    assert not by["logloss_over_champion_logloss_minus_1"]["passed"] and not by["macro_f1_gap[carrier]"]["passed"]
