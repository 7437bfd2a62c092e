"""Evaluate: score the holdout window of this run's training set with the trained artifact (and with the
current champion, on the same rows), compute metrics overall and per slice of every sensitive attribute and
configured slice column, fairness gaps, and run the gate. Always writes a blessing JSON with each check's
value, threshold and verdict, an HTML report, and metrics/plot JSON that ``dvc metrics``/``dvc plots`` read.

Gate modes (params ``evaluate.gate.mode``): ``enabled`` (failing checks refuse), ``dry_run`` (checks are
reported but the model is blessed), ``disabled`` (no checks)."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import golden as golden_set
from jobs import report
from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.errors import ConfigError, DataError
from jobs.common.files import write_json_atomic
from jobs.drift import profile
from jobs.features import attr_col
from jobs.metrics import (binary_metrics, bootstrap_replicates, curve_points, interval, multiclass_metrics,
                          multiclass_replicates, regression_metrics, regression_replicates, replicate_intervals)
from jobs.model import Model, encode, feature_matrix, from_registry, from_run, predict

GATE_MODES = ("enabled", "dry_run", "disabled")
HEADLINE = ("n", "n_pos", "n_neg", "auc", "pr_auc", "logloss", "brier", "ece", "precision", "recall", "f1", "fpr",
            "recall_at_fpr", "prevalence", "mean_score")
REGRESSION_HEADLINE = ("n", "rmse", "mae", "r2", "mean_residual", "mean_label", "mean_score")
MULTICLASS_HEADLINE = ("n", "logloss", "accuracy", "macro_f1")  # and recall[<class>], precision[<class>]
PRIMARY = {"binary": "auc", "regression": "rmse", "multiclass": "logloss"}  # what the golden set reports per task

METRIC_CHECKS = {  # per task: params key, check name, metric, op
    "binary": (("min_auc", "auc", "auc", ">="), ("min_pr_auc", "pr_auc", "pr_auc", ">="),
               ("max_auc", "auc_below_leakage_ceiling", "auc", "<="), ("max_logloss", "logloss", "logloss", "<="),
               ("max_ece", "ece", "ece", "<="), ("min_recall_at_fpr", "recall_at_fpr", "recall_at_fpr", ">=")),
    "regression": (("min_r2", "r2", "r2", ">="), ("max_r2", "r2_below_leakage_ceiling", "r2", "<="),
                   ("max_rmse", "rmse", "rmse", "<="), ("max_mae", "mae", "mae", "<=")),
    "multiclass": (("min_macro_f1", "macro_f1", "macro_f1", ">="), ("max_logloss", "logloss", "logloss", "<=")),
}
# the champion and the golden set: a loss compared as a relative rise (unit-free): params key stem, metric
LOSS_VS_CHAMPION = {"regression": ("rmse", "rmse"), "multiclass": ("logloss", "logloss")}
FAIRNESS_CHECKS = (  # params key, fairness_summary field, op
    ("max_slice_auc_gap", "auc_gap", "<="),
    ("max_demographic_parity_difference", "demographic_parity_difference", "<="),
    ("min_disparate_impact_ratio", "disparate_impact_ratio", ">="),
    ("max_equalized_odds_difference", "equalized_odds_difference", "<="),
    ("max_equal_opportunity_difference", "equal_opportunity_difference", "<="),
)
REGRESSION_FAIRNESS_CHECKS = (  # spreads between a sensitive attribute's groups, in the label's unit
    ("max_slice_mae_gap", "mae_gap", "<="),
    ("max_slice_mean_residual_gap", "mean_residual_gap", "<="),
)
MULTICLASS_FAIRNESS_CHECKS = (  # the largest spread between groups of one class's recall; of macro-F1
    ("max_slice_recall_gap", "recall_gap", "<="),
    ("max_slice_macro_f1_gap", "macro_f1_gap", "<="),
)
TASK_FAIRNESS_CHECKS = {"binary": FAIRNESS_CHECKS, "regression": REGRESSION_FAIRNESS_CHECKS,
                        "multiclass": MULTICLASS_FAIRNESS_CHECKS}


def gate(metrics: dict[str, Any], champion: dict[str, Any] | None, fairness: list[dict], p: dict[str, Any],
         importance: dict[str, float] | None = None, golden: dict[str, Any] | None = None, task: str = "binary") -> list[dict]:
    """Each check: name, value, op, threshold, passed, severity. Absolute, relative-to-champion, golden-set,
    fairness and leakage checks (an AUC or R² too good to be true, one feature carrying the model), those of
    the ``task`` (``METRIC_CHECKS``; a key of the other task is not this model's bar). A check whose params
    key is listed in ``warn_only`` is recorded but does not refuse the model."""
    checks = []
    p = {k: v for k, v in p.items() if v is not None}  # a bar left null: not checked
    warn_only = set(p.get("warn_only") or [])

    def check(key: str, name: str, value: float | None, op: str, sign: float = 1.0, ci: list[float] | None = None) -> None:
        """With an interval ``ci`` the check fails only when the whole interval is on the wrong side of
        the threshold: a gap that resampling can explain is not evidence against the model."""
        threshold = sign * float(p[key])
        decided = value if not ci else (ci[1] if op == ">=" else ci[0])
        passed = decided is not None and (decided >= threshold if op == ">=" else decided <= threshold)
        checks.append({"name": name, "value": value, "op": op, "threshold": threshold, "passed": bool(passed),
                       "severity": "warning" if key in warn_only else "blocking",
                       **({"ci": ci, "decided_on": "ci_upper" if op == ">=" else "ci_lower"} if ci else {})})

    if metrics:
        for key, name, metric, op in METRIC_CHECKS[task]:
            if key in p:
                check(key, name, metrics.get(metric), op)
    if "max_top_feature_share" in p and importance:
        check("max_top_feature_share", f"top_feature_gain_share[{max(importance, key=importance.get)}]",
              max(importance.values()) / sum(importance.values()), "<=")
    if task == "binary":
        if champion and champion.get("overall") and "max_auc_drop_vs_champion" in p:
            delta = None if metrics.get("auc") is None else metrics["auc"] - champion["overall"]["auc"]
            check("max_auc_drop_vs_champion", "auc_minus_champion_auc", delta, ">=", sign=-1.0)
        if golden:  # regression check on the pinned golden set
            if "min_golden_auc" in p:
                check("min_golden_auc", f"golden_auc[v{golden['version']}]", golden["challenger_auc"], ">=")
            if golden.get("champion_auc") is not None and "max_golden_auc_drop_vs_champion" in p:
                check("max_golden_auc_drop_vs_champion", f"golden_auc_minus_champion[v{golden['version']}]",
                      golden["challenger_auc"] - golden["champion_auc"], ">=", sign=-1.0)
    else:  # the champion and the golden set compared on the task's loss (RMSE, log loss), relative: unit-free bars
        stem, m = LOSS_VS_CHAMPION[task]
        if champion and champion.get("overall") and f"max_{stem}_rise_vs_champion" in p:
            check(f"max_{stem}_rise_vs_champion", f"{m}_over_champion_{m}_minus_1",
                  _rise(metrics.get(m), champion["overall"].get(m)), "<=")
        if golden:
            if f"max_golden_{stem}" in p:
                check(f"max_golden_{stem}", f"golden_{m}[v{golden['version']}]", golden[f"challenger_{m}"], "<=")
            if golden.get(f"champion_{m}") is not None and f"max_golden_{stem}_rise_vs_champion" in p:
                check(f"max_golden_{stem}_rise_vs_champion", f"golden_{m}_over_champion_minus_1[v{golden['version']}]",
                      _rise(golden[f"challenger_{m}"], golden[f"champion_{m}"]), "<=")
    for f in fairness:
        for key, field, op in TASK_FAIRNESS_CHECKS[task]:
            if key in p and f.get(field) is not None:
                check(key, f"{field}[{f['attribute']}]", f[field], op, ci=f.get(f"{field}_ci"))
    return checks


def _rise(value: float | None, reference: float | None) -> float | None:
    """value / reference - 1: how much larger (an error metric) the value is, as a share of the reference."""
    return None if value is None or not reference else value / reference - 1


def bless(checks: list[dict], mode: str, sha: str) -> dict[str, Any]:
    """``enabled``: any failed blocking check refuses; ``dry_run``: failures are reported, the model is
    blessed; ``disabled``: no checks. Warning checks never refuse."""
    if mode not in GATE_MODES:
        raise ConfigError(f"params evaluate.gate.mode '{mode}' is not one of {GATE_MODES}")
    if mode == "disabled":
        return {"blessed": True, "mode": mode, "artifact_sha256": sha, "checks": [], "failed": [], "warnings": [],
                "reasons": ["gate disabled"]}
    failed = [c["name"] for c in checks if not c["passed"] and c.get("severity", "blocking") == "blocking"]
    warnings = [c["name"] for c in checks if not c["passed"] and c.get("severity") == "warning"]
    reasons = [f"failed: {', '.join(failed)}"] if failed else ["all blocking checks passed"]
    if failed and mode == "dry_run":
        reasons.append("dry_run: blessed anyway")
    if warnings:
        reasons.append(f"warnings: {', '.join(warnings)}")
    return {"blessed": mode == "dry_run" or not failed, "mode": mode, "artifact_sha256": sha, "checks": checks,
            "failed": failed, "warnings": warnings, "reasons": reasons}


FAIRNESS_RATES = {"demographic_parity_difference": "predicted_positive_rate", "equal_opportunity_difference": "recall",
                  "auc_gap": "auc"}


def fairness_summary(slices: list[dict], min_size: int, min_class_count: int = 10,
                     reps: dict[tuple, dict[str, Any]] | None = None, level: float = 0.95) -> list[dict]:
    """Per sensitive attribute, over its slices of at least ``min_size`` rows: demographic parity difference
    (spread of predicted-positive rates), disparate impact ratio (lowest / highest rate; the four-fifths rule
    asks >= 0.8), equal opportunity difference (spread of true-positive rates), equalized odds difference
    (the larger of the TPR and FPR spreads) and the largest AUC gap. A rate or AUC from a slice with fewer
    than ``min_class_count`` positives (for TPR, AUC) or negatives (FPR, AUC) is noise and is left out.
    With bootstrap replicates per slice (``reps``, keyed by (attribute, value)) each measure also gets its
    ``<name>_ci`` interval, computed replicate by replicate over the same slices."""
    import numpy as np
    rep_matrix = partial(_rep_matrix, reps)
    rep_spread = partial(_rep_spread, reps)
    out = []
    for attr in dict.fromkeys(s["attribute"] for s in slices):
        rows = [s for s in slices if s["attribute"] == attr and s["n"] >= min_size]
        with_pos = [s for s in rows if s["n_pos"] >= min_class_count]
        with_neg = [s for s in rows if s.get("n_neg", s["n"] - s["n_pos"]) >= min_class_count]
        eligible = {"auc": [s for s in with_pos if s in with_neg], "predicted_positive_rate": rows, "recall": with_pos}
        f: dict[str, Any] = {"attribute": attr, "slices": len(rows)}
        for name, key in FAIRNESS_RATES.items():
            f[name], f[f"{name}_between"] = _spread(eligible[key], key)
        fpr, _ = _spread(with_neg, "fpr")
        tpr = f["equal_opportunity_difference"]
        f["equalized_odds_difference"] = max(v for v in (tpr, fpr) if v is not None) if (tpr, fpr) != (None, None) else None
        ppr = [s["predicted_positive_rate"] for s in rows if s["predicted_positive_rate"] is not None]
        f["disparate_impact_ratio"] = (min(ppr) / max(ppr)) if len(ppr) > 1 and max(ppr) > 0 else None
        # intervals, replicate by replicate
        spreads = {name: rep_spread(eligible[key], key) for name, key in FAIRNESS_RATES.items()}
        fpr_reps = rep_spread(with_neg, "fpr")
        if spreads["equal_opportunity_difference"] is not None and fpr_reps is not None:
            spreads["equalized_odds_difference"] = np.fmax(spreads["equal_opportunity_difference"], fpr_reps)
        ppr_m = rep_matrix([s for s in rows if s["predicted_positive_rate"] is not None], "predicted_positive_rate")
        if ppr_m is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                spreads["disparate_impact_ratio"] = np.nanmin(ppr_m, axis=0) / np.nanmax(ppr_m, axis=0)
        for name, v in spreads.items():
            if v is not None and f.get(name) is not None:
                f[f"{name}_ci"] = interval(v, level)
        out.append(f)
    return out


def _spread(rows: list[dict], key: str) -> tuple[float | None, str | None]:
    """(max - min of ``key`` over ``rows``, "the highest's value vs the lowest's"); None under two values."""
    vals = [(r[key], r["value"]) for r in rows if r.get(key) is not None]
    if len(vals) < 2:
        return None, None
    (lo, lo_v), (hi, hi_v) = min(vals), max(vals)
    return hi - lo, f"{hi_v} vs {lo_v}"


def _rep_matrix(reps: dict[tuple, dict[str, Any]] | None, rows: list[dict], key: str):
    """The bootstrap replicates of ``key`` of ``rows`` (slices), one row per slice; None if any is missing."""
    import numpy as np
    if not reps or len(rows) < 2 or any((r["attribute"], r["value"]) not in reps for r in rows):
        return None
    return np.vstack([reps[(r["attribute"], r["value"])][key] for r in rows])


def _rep_spread(reps: dict[tuple, dict[str, Any]] | None, rows: list[dict], key: str):
    """The spread of ``key`` over ``rows``, replicate by replicate."""
    import numpy as np
    m = _rep_matrix(reps, [r for r in rows if r.get(key) is not None], key)
    return None if m is None else np.nanmax(m, axis=0) - np.nanmin(m, axis=0)


def _gap(name: str, rows: list[dict], key: str, reps: dict[tuple, dict[str, Any]] | None, level: float) -> dict[str, Any]:
    """``name``: the spread of ``key`` over ``rows`` (slices), ``<name>_between`` whose, and ``<name>_ci`` its
    interval from the slices' replicates (when they give one)."""
    out: dict[str, Any] = dict(zip((name, f"{name}_between"), _spread(rows, key)))
    spread = _rep_spread(reps, rows, key)
    if spread is not None and out[name] is not None:
        out[f"{name}_ci"] = interval(spread, level)
    return out


def regression_fairness(slices: list[dict], min_size: int, reps: dict[tuple, dict[str, Any]] | None = None,
                        level: float = 0.95) -> list[dict]:
    """Per sensitive attribute, over its slices of at least ``min_size`` rows: the spread (largest minus
    smallest) of the per-group MAE (``mae_gap``: whom the model serves worse) and of the mean residual
    (``mean_residual_gap``: whom it over- or under-predicts, in the label's unit), each with its interval
    from the slices' bootstrap replicates (``<name>_ci``)."""
    out = []
    for attr in dict.fromkeys(s["attribute"] for s in slices):
        rows = [s for s in slices if s["attribute"] == attr and s["n"] >= min_size]
        f: dict[str, Any] = {"attribute": attr, "slices": len(rows)}
        for name, key in (("mae_gap", "mae"), ("mean_residual_gap", "mean_residual")):
            f.update(_gap(name, rows, key, reps, level))
        out.append(f)
    return out


def multiclass_fairness(slices: list[dict], min_size: int, classes: list[str],
                        reps: dict[tuple, dict[str, Any]] | None = None, level: float = 0.95) -> list[dict]:
    """Per sensitive attribute, over its slices of at least ``min_size`` rows: per class, the spread of its
    recall between groups (``recall_gap[<class>]``); ``recall_gap``, the largest of them (``recall_gap_class``:
    whose), and the spread of macro-F1 (``macro_f1_gap``), with intervals from the slices' replicates (the
    largest spread taken replicate by replicate)."""
    import numpy as np
    out = []
    for attr in dict.fromkeys(s["attribute"] for s in slices):
        rows = [s for s in slices if s["attribute"] == attr and s["n"] >= min_size]
        f: dict[str, Any] = {"attribute": attr, "slices": len(rows)}
        per = {c: _spread(rows, f"recall[{c}]") for c in classes}
        for c, (gap, between) in per.items():
            f[f"recall_gap[{c}]"], f[f"recall_gap[{c}]_between"] = gap, between
        known = {c: g for c, (g, _) in per.items() if g is not None}
        worst = max(known, key=known.get) if known else None
        f["recall_gap"], f["recall_gap_class"] = (known[worst], worst) if worst else (None, None)
        reps_gap = [g for c in classes if (g := _rep_spread(reps, rows, f"recall[{c}]")) is not None]
        if reps_gap and f["recall_gap"] is not None:
            f["recall_gap_ci"] = interval(np.nanmax(np.vstack(reps_gap), axis=0), level)
        f.update(_gap("macro_f1_gap", rows, "macro_f1", reps, level))
        out.append(f)
    return out


def task_fairness(task: str, slices: list[dict], min_size: int, reps: dict[tuple, dict[str, Any]] | None,
                  min_class_count: int = 10, classes: tuple[str, ...] = ()) -> list[dict]:
    """The fairness measures of the ``task``, per sensitive attribute of ``slices``."""
    if task == "regression":
        return regression_fairness(slices, min_size, reps)
    if task == "multiclass":
        return multiclass_fairness(slices, min_size, list(classes), reps)
    return fairness_summary(slices, min_size, min_class_count, reps)


def slice_frame(scored: DataFrame, attrs: list[str], pairs: bool = True) -> DataFrame:
    """One row per (example, slice): every attribute alone and, with ``pairs``, every pairwise intersection
    (``attribute`` 'a & b', ``value`` 'x & y'). One Spark pass then computes every slice's metrics."""
    from itertools import combinations
    val = lambda a: F.coalesce(F.col(attr_col(a)).cast("string"), F.lit("__null__"))  # noqa: E731
    groups = [F.struct(F.lit(a).alias("attribute"), val(a).alias("value")) for a in attrs]
    if pairs:
        groups += [F.struct(F.lit(f"{a} & {b}").alias("attribute"), F.concat_ws(" & ", val(a), val(b)).alias("value"))
                   for a, b in combinations(attrs, 2)]
    keep = [c for c in scored.columns if not c.startswith("attr_")]
    return scored.select(*keep, F.explode(F.array(*groups)).alias("_s")).select(*keep, "_s.attribute", "_s.value")


def slice_metrics(scored: DataFrame, label: str, attrs: list[str], threshold: float, min_size: int = 0,
                  pairs: bool = True, fpr_target: float = 0.01, replicates: int = 200,
                  seed: int = 0, task: str = "binary", classes: tuple[str, ...] = ()) -> tuple[list[dict], dict[tuple, dict[str, Any]]]:
    """Metrics per slice (``headline_keys`` of the task) with 95% bootstrap
    intervals (``<metric>_ci``), and the bootstrap replicates per (attribute, value). Single-attribute slices are all kept (``small`` marks those under ``min_size``);
    intersections under ``min_size`` rows are left out."""
    sliced = slice_frame(scored, attrs, pairs).localCheckpoint(eager=True)
    by = ["attribute", "value"]
    if task == "regression":
        reps = regression_replicates(sliced, label, by, weight="weight", replicates=replicates, seed=seed) if replicates else {}
        metrics, keys = regression_metrics(sliced, label, by, weight="weight"), REGRESSION_HEADLINE
    elif task == "multiclass":
        reps = multiclass_replicates(sliced, label, list(classes), by, weight="weight", replicates=replicates,
                                     seed=seed) if replicates else {}
        metrics, keys = multiclass_metrics(sliced, label, list(classes), by, weight="weight"), headline_keys(task, classes)
    else:
        reps = bootstrap_replicates(sliced, label, threshold, by, weight="weight",
                                    replicates=replicates, seed=seed) if replicates else {}
        metrics = binary_metrics(sliced, label, threshold, by, weight="weight", fpr_target=fpr_target)
        keys = HEADLINE + ("predicted_positive_rate",)
    cis = replicate_intervals(reps)
    rows = []
    for r in metrics:
        if " & " in r["attribute"] and r["n"] < min_size:
            continue
        ci = cis.get((r["attribute"], r["value"]), {})
        rows.append({"attribute": r["attribute"], "value": r["value"], "small": r["n"] < min_size,
                     **{k: r[k] for k in keys}, **{f"{m}_ci": v for m, v in ci.items()}})
    return sorted(rows, key=lambda r: (" & " in r["attribute"], r["attribute"], str(r["value"]))), reps


def fairness_checks(scored: DataFrame, label: str, threshold: float, sensitive: list[str], ev: dict[str, Any],
                    seed: int = 0, task: str = "binary", classes: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """The gate's fairness checks alone, with its bars (``ev``: the evaluate params, ``warn_only`` ones
    recorded, not refusing), on rows other than a holdout (``scored``: score, label, weight, ``attr_``
    columns), per sensitive attribute: (slices, checks). Promote and monitor judge shadow and served days
    by it."""
    min_size = int(ev.get("min_slice_size", 100))
    slices, reps = slice_metrics(scored, label, sensitive, threshold, min_size, pairs=False,
                                 replicates=int(ev.get("bootstrap_replicates", 200)), seed=seed, task=task, classes=classes)
    fairness = task_fairness(task, slices, min_size, reps, int(ev.get("min_slice_class_count", 10)), classes)
    gp = dict(ev.get("gate") or {})
    fair_p = {k: gp[k] for k, _, _ in TASK_FAIRNESS_CHECKS[task] if k in gp} | {"warn_only": gp.get("warn_only") or []}
    return slices, gate({}, None, fairness, fair_p, task=task)


def headline_keys(task: str, classes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The metrics a model of ``task`` is reported on."""
    if task == "multiclass":
        return MULTICLASS_HEADLINE + tuple(f"{m}[{c}]" for c in classes for m in ("recall", "precision"))
    return REGRESSION_HEADLINE if task == "regression" else HEADLINE


def _headline(m: dict[str, Any], task: str = "binary", classes: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: m.get(k) for k in headline_keys(task, classes)}


def overall_metrics(scored: DataFrame, label: str, threshold: float, fpr_target: float, task: str = "binary",
                    weight: str | None = "weight", classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The task's metrics of every row of ``scored`` (one dict)."""
    if task == "regression":
        return regression_metrics(scored, label, weight=weight)[0]
    if task == "multiclass":
        return multiclass_metrics(scored, label, list(classes), weight=weight)[0]
    return binary_metrics(scored, label, threshold, weight=weight, fpr_target=fpr_target)[0]


def shap_summary(df: DataFrame, n: int, booster, names: list[str], types: list[str], rows: int, seed: int,
                 top: int = 12, points: int = 300) -> dict[str, Any]:
    """XGBoost's own SHAP contributions (``pred_contribs``) on a seeded sample of at most ``rows`` of the
    ``n`` holdout rows (the only rows that reach the driver): mean |SHAP| per feature and, for the top
    features, points (SHAP value, feature value as a 0-1 rank within the sample) for a summary (beeswarm) plot."""
    import numpy as np

    from jobs.common.spark import bounded_sample
    pdf = bounded_sample(df, rows, seed, n).select(*names).toPandas()
    if pdf.empty:
        return {}
    x = pdf.astype("float32")
    dm = feature_matrix(x, names, types)
    contrib = booster.predict(dm, pred_contribs=True)
    if contrib.ndim == 3:  # multiclass: each row's contributions towards its most probable class
        contrib = contrib[np.arange(len(contrib)), booster.predict(dm).argmax(axis=1)]
    contrib = contrib[:, :-1]
    mean_abs = np.abs(contrib).mean(axis=0)
    order = np.argsort(-mean_abs)[:top]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pdf), size=min(points, len(pdf)), replace=False)
    out = {"rows": len(pdf), "mean_abs": {names[i]: float(mean_abs[i]) for i in order}, "points": {}}
    for i in order:
        col = x.iloc[:, i].rank(pct=True).to_numpy()
        out["points"][names[i]] = [[float(contrib[j, i]), None if np.isnan(col[j]) else float(col[j])] for j in pick]
    return out


def champion_metrics(holdout: DataFrame, registry, spec, names: list[str], label: str, threshold: float,
                     fpr_target: float) -> tuple[dict[str, Any], Model | None]:
    """The current champion scored on the same holdout rows (if it uses the same features)."""
    alias = registry.alias(spec.name, "champion")
    if not alias:
        return {}, None
    champion = from_registry(registry, spec.name, alias["version"])
    if champion.feature_names != names:
        return {"version": champion.version, "note": "champion uses other features; not comparable on this holdout"}, None
    cs = predict(holdout, champion).localCheckpoint(eager=True)
    doc = {"version": champion.version, "sha256": champion.sha256,
           "overall": _headline(overall_metrics(cs, label, threshold, fpr_target, spec.task, classes=spec.label.classes),
                                spec.task, spec.label.classes),
           "curves": task_curves(cs, label, spec.task)}
    return doc, champion


# ---------------------------------------------------------------- shell
def run(ctx: StepContext) -> None:
    from jobs.common.spark import concurrently, get_spark
    from jobs.registry import open_registry
    spark = get_spark(ctx.settings, "evaluate")
    spec, p = ctx.dataset, ctx.step_params()
    label, threshold = spec.label.name, float(p.get("threshold", 0.5))
    fpr_target, seed = float(p.get("fpr_target", 0.01)), int(p.get("seed", 0))
    gp = dict(p.get("gate", {}))
    train_doc = json.loads((ctx.run_dir / "model" / "train.json").read_text())
    model = from_run(ctx.run_dir)  # verified: the sha256 train recorded
    names, types, sha = model.feature_names, model.feature_types, model.sha256

    ts = (delta_io.read_pinned(spark, ctx.table("training_set"), ctx.reads, "training_set")
          .where((F.col("cutoff_ds") == F.lit(ctx.ds)) & (F.col("split") == "holdout") & F.col(label).isNotNull()))
    attrs = list(dict.fromkeys([*spec.sensitive, *spec.slices]))
    holdout = ts.select(*names, F.col(label).cast("double").alias(label), F.coalesce(F.col("weight"), F.lit(1.0)).alias("weight"),
                        *[attr_col(a) for a in attrs])
    # scored once and materialised as a local checkpoint (rows kept as they are: cheaper to build than a
    # compressed columnar cache, and no lineage back to the scoring): every metric below reads it
    scored = predict(holdout, model).localCheckpoint(eager=True)
    task, classes = spec.task, spec.label.classes
    n = scored.count()
    if not n:
        raise DataError(f"training_set cutoff_ds={ctx.ds}: the holdout window is empty; nothing to evaluate")
    min_size = int(p.get("min_slice_size", 50))
    booster = model.booster()

    def per_slice():
        return slice_metrics(scored, label, attrs, threshold, min_size, pairs=bool(p.get("slice_pairs", True)),
                             fpr_target=fpr_target, replicates=int(p.get("bootstrap_replicates", 200)), seed=seed,
                             task=task, classes=classes)

    def against_champion():
        # the champion scores the same rows, read from the challenger's materialised frame (not from Delta again)
        champion, champ_model = champion_metrics(scored.select(*holdout.columns), open_registry(ctx.settings.registry),
                                                 spec, names, label, threshold, fpr_target)
        version = golden_set.version(spark, ctx)
        return champion, golden_metrics(spark, ctx, version, model, champ_model, threshold) if version is not None else None

    def explained():
        return (shap_summary(encode(scored, model.vocabularies), n, booster, names, types,
                             int(p.get("shap_rows", 2000)), seed),
                profile(scored.select("score"), ["score"], [])["score"], task_curves(scored, label, task))
    # independent of each other once the scored holdout is materialised: side by side (the driver's work of one
    # overlaps the tasks of another)
    overall, (slices, reps), (champion, golden), (shap, score_profile, curves) = concurrently(
        partial(overall_metrics, scored, label, threshold, fpr_target, task, classes=classes), per_slice,
        against_champion, explained)
    sensitive = [s for s in slices if s["attribute"] in spec.sensitive]
    fairness = task_fairness(task, sensitive, min_size, reps, int(p.get("min_slice_class_count", 10)), classes)
    importance = {k: float(v) for k, v in booster.get_score(importance_type="total_gain").items()}
    checks = gate(overall, champion, fairness, gp, importance, golden, task)
    blessing = bless(checks, gp.get("mode", "enabled"), sha)
    blessing.update({"dataset": spec.name, "ds": ctx.ds.isoformat(), "champion_version": champion.get("version")})
    lineage_dir = ctx.run_dir / "lineage"
    lineage = {f.stem: json.loads(f.read_text()).get("reads", {}) for f in sorted(lineage_dir.glob("*.json"))}
    windows = json.loads((lineage_dir / "features.json").read_text()).get("counts", {}).get("windows", {}) if (lineage_dir / "features.json").exists() else {}
    doc = {"dataset": spec.name, "ds": ctx.ds.isoformat(), "task": task, "classes": list(classes) or None,
           "overall": _headline(overall, task, classes), "threshold": threshold,
           "fpr_target": fpr_target, "slices": slices, "fairness": fairness, "blessing": blessing, "importance": importance,
           "shap": shap, "windows": windows, "score_profile": score_profile,
           "curves": {"challenger": curves, "champion": champion.get("curves")},
           "champion": {k: v for k, v in champion.items() if k != "curves"}, "golden": golden, "lineage": lineage,
           "model": {k: train_doc.get(k) for k in ("sha256", "params", "counts", "num_workers", "trained_on",
                                                    "best_iteration", "num_boosted_rounds", "feature_names", "tuned")},
           "sensitive": list(spec.sensitive), "label": label}
    out = ctx.run_dir / "evaluation"
    write_json_atomic(out / "blessing.json", blessing)
    write_json_atomic(out / "metrics.json", _headline(overall, task, classes) | {"blessed": blessing["blessed"]})
    write_json_atomic(out / "evaluation.json", doc)
    write_plots(out / "plots", doc)
    (out / "report.html").write_text(report.render(doc))
    (out / "model_card.md").write_text(report.model_card(doc))
    key = {"regression": ("rmse", "mae", "r2"), "multiclass": ("logloss", "macro_f1", "accuracy")}.get(task, ("auc", "pr_auc"))
    ctx.counts.update({k: overall[k] for k in key} | {"blessed": blessing["blessed"], "failed": blessing["failed"],
                                                       "warnings": blessing["warnings"]})
    figures = " ".join(f"{k} {_num(overall[k])}" for k in key)
    ctx.rows = overall["n"]
    ctx.figure = figures + (", BLESSED" if blessing["blessed"] else f", NOT BLESSED ({', '.join(blessing['failed'])})")
    print(f"evaluate {spec.name} ds {ctx.ds}: {figures} on {overall['n']} "
          f"holdout rows; {'BLESSED' if blessing['blessed'] else 'NOT BLESSED'} ({'; '.join(blessing['reasons'])}); "
          f"report {out / 'report.html'}")


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def task_curves(scored: DataFrame, label: str, task: str) -> list[dict]:
    """Binary: ROC, PR and reliability points (``curve_points``); regression: the mean label per 20-quantile
    bin of the prediction (a predicted-vs-actual curve), computed in Spark."""
    if task == "multiclass":
        return []
    if task != "regression":
        return curve_points(scored, label, weight="weight")
    edges = sorted(set(scored.approxQuantile("score", [i / 20 for i in range(1, 20)], 0.001)))
    b = sum((F.col("score") >= F.lit(e)).cast("int") for e in edges) if edges else F.lit(0)
    rows = (scored.groupBy(b.alias("bin")).agg((F.sum(F.col("weight") * F.col("score")) / F.sum("weight")).alias("mean_score"),
                                               (F.sum(F.col("weight") * F.col(label)) / F.sum("weight")).alias("mean_label"),
                                               F.count(F.lit(1)).alias("n")).orderBy("bin").collect())
    return [{"bin": r["bin"], "mean_score": r["mean_score"], "mean_label": r["mean_label"], "n": r["n"]} for r in rows]


def golden_metrics(spark, ctx: StepContext, version: int, model: Model, champion: Model | None,
                   threshold: float) -> dict[str, Any]:
    """Challenger (and champion) on the golden set at a Delta version (``jobs.golden``): AUC (binary) or
    RMSE (regression). Each model scores the set once (a local checkpoint): its metrics' aggregations then share it."""
    label = ctx.dataset.label.name
    path = ctx.table("golden_set")
    if not delta_io.is_delta(spark, path):
        raise DataError(f"params evaluate.golden_version is {version} but there is no golden set at {path}: "
                        f"run python -m jobs.golden --ds <ds> first")
    df = (spark.read.format("delta").option("versionAsOf", version).load(path)
          .select(*model.feature_names, F.col(label).cast("double").alias(label)))
    ctx.reads[f"golden_set@{version}"] = version
    metric = PRIMARY[ctx.dataset.task]

    def of(m: Model) -> float | None:
        scored = predict(df, m).localCheckpoint(eager=True)
        return overall_metrics(scored, label, threshold, 0.01, ctx.dataset.task, weight=None,
                               classes=ctx.dataset.label.classes)[metric]
    out = {"version": version, "metric": metric, f"challenger_{metric}": of(model)}
    if champion:
        out[f"champion_{metric}"] = of(champion)
    return out


def write_plots(folder: Path, doc: dict[str, Any]) -> None:
    """Plot data as JSON lists, the shape ``dvc plots`` reads."""
    pts = doc["curves"]["challenger"]
    if doc.get("task") == "multiclass":
        write_json_atomic(folder / "slices.json", [{"slice": f"{s['attribute']}={s['value']}", "macro_f1": s["macro_f1"]}
                                                   for s in doc["slices"]])
        return
    if doc.get("task") == "regression":
        write_json_atomic(folder / "predicted_vs_actual.json", [{"mean_score": p["mean_score"], "mean_label": p["mean_label"]}
                                                                 for p in pts])
        write_json_atomic(folder / "slices.json", [{"slice": f"{s['attribute']}={s['value']}", "mae": s["mae"]} for s in doc["slices"]])
        return
    write_json_atomic(folder / "roc.json", [{"fpr": p["fpr"], "tpr": p["tpr"], "threshold": p["threshold"]} for p in pts])
    write_json_atomic(folder / "pr.json", [{"recall": p["recall"], "precision": p["precision"]} for p in pts])
    write_json_atomic(folder / "calibration.json", [{"mean_score": p["bin_mean_score"], "positive_rate": p["bin_positive_rate"]}
                                                     for p in sorted(pts, key=lambda p: p["threshold"])])
    write_json_atomic(folder / "slices.json", [{"slice": f"{s['attribute']}={s['value']}", "auc": s["auc"]} for s in doc["slices"]])


def main(argv: list[str] | None = None) -> None:
    run_step("evaluate", run, argv, __doc__)


if __name__ == "__main__":
    main()
