"""Monitor: watch the model that serves every day against what it was trained on, and start its retraining
when the world has moved.

For day D (after D was scored), against the reference published with the version that served D (its
``profile.json``: the train window's bins per feature; its evaluation's holdout score distribution):

- **data drift** of every feature over D's examples (the ``features`` table, which scoring writes for a
  validated day): PSI on the reference's bins, and the Jensen-Shannon distance (categorical) or the
  Wasserstein distance in units of the reference's 5-95% spread (numeric); a feature has *drifted* when
  either is above its threshold; and the change of its null rate (a calendar feature holding one value all
  day, like the day of the week, is not judged: one day is never the week of the reference);
- **prediction drift**: the PSI of D's served scores on the holdout's score bins (when a model served D,
  not the baseline);
- **volume**: D's examples against the reference's examples per day;
- **data quality**: D's failed warning and critical expectations per table, and on how many of the last
  ``window_days`` days each table had failed warnings (the trend);
- **realized performance and fairness** of the day whose labels have all matured by D (D minus the label
  maturity): AUC, PR-AUC, calibration (ECE) of what served that day, per slice too, and the evaluation
  gate's fairness checks on those rows.

Every figure is a row of the Delta table ``monitoring`` (partition ds = D, replaced on rerun): ``ds``,
``subject_ds`` (the day the figure describes), ``model_version``, ``kind``, ``metric``, ``feature``,
``slice``, ``value``, ``threshold``, ``breached``, ``detail``.

**The retraining trigger.** Each day yields four signals: ``data_drift`` (at least ``drift_share`` of the
features drifted), ``prediction_drift``, ``performance`` (realized AUC or PR-AUC under its bar) and
``fairness`` (a blocking fairness check failed). Retraining is due when one of ``trigger.signals`` held on
at least ``min_days`` of the last ``window_days`` days, unless a retraining was triggered within
``cooldown_days``. The signals and the verdict are rows too (kinds ``signal`` and ``trigger``), the verdict
with its reason also ``<run>/monitor/verdict.json``, and ``<run>/monitor/report.html`` shows the day on one
page. ``monitor_pipeline`` starts ``train_pipeline`` with that reason when the verdict says so.

    python -m jobs.monitor --ds D               the day's monitoring (after python -m jobs.score --ds D)
    python -m jobs.monitor --ds D --verdict     prints the reason and exits 0 when D's verdict is to
                                                retrain; exits 97 otherwise (the DAG's trigger task)"""
from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io, storage
from jobs.common.cli import StepContext, parser, run_step
from jobs.common.errors import ConfigError, TrainyardError
from jobs.drift import bin_counts, distances, local_files, shares

SCHEMA = ("ds date, subject_ds date, model_version string, kind string, metric string, feature string, slice string, "
          "value double, threshold double, breached boolean, detail string")
SIGNALS = ("data_drift", "prediction_drift", "performance", "fairness")
NO_RETRAIN_EXIT = 97  # --verdict: the day's verdict is not to retrain (the DAG's trigger task is skipped)
VERDICT, REPORT = "verdict.json", "report.html"


def _row(kind: str, metric: str, value: float | None = None, feature: str | None = None, slice_: str | None = None,
         threshold: float | None = None, breached: bool | None = None, detail: str | None = None,
         subject: dt.date | None = None) -> dict[str, Any]:
    return {"kind": kind, "metric": metric, "feature": feature, "slice": slice_,
            "value": None if value is None else float(value), "threshold": None if threshold is None else float(threshold),
            "breached": None if breached is None else bool(breached), "detail": detail, "subject_ds": subject}


REALIZED = ("auc", "pr_auc", "rmse", "r2", "logloss", "macro_f1")  # the realized figures kept over time, per task
HIGHER_IS_BETTER = ("auc", "pr_auc", "r2", "macro_f1", "disparate_impact_ratio")


def _thresholds(p: dict[str, Any]) -> dict[str, float]:
    return {"psi": float(p.get("psi_threshold", 0.2)), "js_distance": float(p.get("js_threshold", 0.1)),
            "wasserstein": float(p.get("wasserstein_threshold", 0.1))}


# ---------------------------------------------------------------- judging a day (pure)
def bins(reference: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The bin definition of every column of a reference profile (what ``drift.bin_counts`` takes)."""
    return {c: ({"kind": "numeric", "edges": r["edges"]} if r["kind"] == "numeric" else {"kind": "categorical", "values": r["values"]})
            for c, r in reference.items()}


def calendar_features(spec) -> set[str]:
    """Derived features computed from the examples' event time alone (day of week, hour, ...)."""
    from jobs.common.sqlexpr import referenced_columns
    columns = [c.name for c in spec.example_source.columns]
    return {name for name, expr in spec.features.derived.items()
            if referenced_columns(expr, columns) == [spec.example_source.event_time]}


def drift_rows(reference: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]], p: dict[str, Any],
               calendar: set[str] = frozenset()) -> list[dict]:
    """Per reference column: PSI, then Jensen-Shannon (categorical) or Wasserstein (numeric), each against its
    threshold; the null-rate change; and ``drifted`` (1 when either distance is over its threshold). A column
    the day lacks has drifted; a day with fewer than ``min_rows`` rows is not judged (value null), nor is a
    ``calendar`` feature that holds one value all day (the day of the week: a day is never the whole week)."""
    t, null_t, min_rows = _thresholds(p), float(p.get("null_rate_change", 0.05)), int(p.get("min_rows", 100))
    rows: list[dict] = []
    for col, ref in reference.items():
        cur = current.get(col)
        if cur is None:
            rows.append(_row("feature_drift", "drifted", 1.0, col, breached=True, detail="absent from the day's features"))
            continue
        if cur["rows"] < min_rows:
            rows.append(_row("feature_drift", "drifted", None, col, breached=False,
                             detail=f"not judged: {cur['rows']} rows, min_rows {min_rows}"))
            continue
        if col in calendar and sum(1 for c in cur["counts"] if c) <= 1:
            rows.append(_row("feature_drift", "drifted", None, col, breached=False,
                             detail="not judged: a calendar feature with one value all day"))
            continue
        d = distances(ref, cur)
        second = "wasserstein" if ref["kind"] == "numeric" else "js_distance"
        over = {m: d.get(m) is not None and d[m] > t[m] for m in ("psi", second)}
        rows += [_row("feature_drift", m, d.get(m), col, threshold=t[m], breached=over[m]) for m in ("psi", second)]
        change = None if d["null_rate"] is None or d["null_rate_reference"] is None else d["null_rate"] - d["null_rate_reference"]
        rows.append(_row("null_rate", "null_rate_change", change, col, threshold=null_t,
                         breached=change is not None and abs(change) > null_t,
                         detail=f"reference {d['null_rate_reference']:.4f}, day {d['null_rate']:.4f}" if change is not None else None))
        rows.append(_row("feature_drift", "drifted", float(any(over.values())), col, breached=any(over.values())))
    return rows


def volume_rows(n: int, expected: float | None, p: dict[str, Any]) -> list[dict]:
    """The day's examples, and their ratio to the reference's examples per day (breached beyond +-volume_change)."""
    out = [_row("volume", "rows", n)]
    if expected:
        ratio, bar = n / expected, float(p.get("volume_change", 0.5))
        out.append(_row("volume", "rows_ratio", ratio, threshold=bar, breached=abs(ratio - 1) > bar,
                        detail=f"{n} rows vs {expected:.0f} per day in the train window"))
    return out


def day_signals(rows: list[dict], p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The day's four signals from its rows: on, value, detail (naming what breached)."""
    judged = [r for r in rows if r["kind"] == "feature_drift" and r["metric"] == "drifted" and r["value"] is not None]
    drifted = [r["feature"] for r in judged if r["breached"]]
    psi = {r["feature"]: r["value"] for r in rows if r["kind"] == "feature_drift" and r["metric"] == "psi"}
    share = len(drifted) / len(judged) if judged else None
    named = ", ".join(f"{f} (psi {psi[f]:.3f})" if psi.get(f) is not None else f
                      for f in sorted(drifted, key=lambda f: -(psi.get(f) or 0)))
    bar = float(p.get("trigger", {}).get("drift_share", 0.2))
    out = {"data_drift": {"on": share is not None and share >= bar and bool(drifted), "value": share,
                          "detail": f"{len(drifted)} of {len(judged)} features drifted" + (f": {named}" if named else "")}}
    pred = next((r for r in rows if r["kind"] == "prediction_drift" and r["metric"] == "psi"), None)
    out["prediction_drift"] = {"on": bool(pred and pred["breached"]), "value": pred and pred["value"],
                               "detail": (f"score psi {pred['value']:.3f}" if pred["value"] is not None else pred["detail"])
                               if pred else "not compared"}
    for kind in ("performance", "fairness"):
        mine = [r for r in rows if r["kind"] == kind]
        bad = [r for r in mine if r["breached"] and (kind == "fairness" or r["slice"] is None)]
        unjudged = next((r["detail"] for r in mine if (r["detail"] or "").startswith("not judged")), None)
        said = ", ".join(f"{r['metric']}{'[' + r['slice'] + ']' if r['slice'] else ''} {r['value']:.4f} "
                         f"({'<' if r['metric'] in HIGHER_IS_BETTER else '>'} bar {r['threshold']})"
                         for r in bad) or unjudged or ("within the bars" if mine else "nothing judged")
        out[kind] = {"on": bool(bad), "value": len(bad),
                     "detail": (f"day {mine[0]['subject_ds']}: " if mine and mine[0]["subject_ds"] else "") + said}
    return out


def decide(ds: dt.date, today: dict[str, dict[str, Any]], history: dict[dt.date, set[str]],
           last_trigger: dt.date | None, p: dict[str, Any]) -> tuple[bool, str]:
    """(retrain, why): due when a signal of ``trigger.signals`` was on for at least ``min_days`` of the last
    ``window_days`` days (today included; a day not monitored counts as off), unless retraining was
    triggered within ``cooldown_days`` before today."""
    t = dict(p.get("trigger") or {})
    window, need, cooldown = int(t.get("window_days", 3)), int(t.get("min_days", 2)), int(t.get("cooldown_days", 7))
    watched = list(t.get("signals") or SIGNALS)
    unknown = [s for s in watched if s not in SIGNALS]
    if unknown:
        raise ConfigError(f"params monitor.trigger.signals: {unknown} are not among {list(SIGNALS)}")
    on_today = {s for s, v in today.items() if v["on"]}
    days = [ds - dt.timedelta(days=i) for i in range(window)]
    due = []
    for s in watched:
        on = [d for d in days if s in (on_today if d == ds else history.get(d, set()))]
        if len(on) >= need:
            due.append(f"{s} on {len(on)} of the last {window} days ({', '.join(d.isoformat() for d in sorted(on))})"
                       + (f": {today[s]['detail']}" if s in on_today else ""))
    if not due:
        return False, f"no signal on {need} of the last {window} days" + (
            f" (today: {', '.join(sorted(on_today))})" if on_today else "")
    if not t.get("enabled", True):
        return False, f"retraining would be due ({'; '.join(due)}) but monitor.trigger.enabled is false"
    if last_trigger is not None and (ds - last_trigger).days < cooldown:
        return False, (f"retraining was triggered on {last_trigger}, within the cooldown of {cooldown} days; "
                       f"still: {'; '.join(due)}")
    return True, "; ".join(due)


# ---------------------------------------------------------------- the day's figures (Spark)
def reference(registry, name: str, version: str) -> dict[str, Any]:
    """The version's reference: its verified profile, its holdout score profile and train window (evaluation)."""
    from jobs.model import profile_from_registry
    prof = profile_from_registry(registry, name, version)
    path = registry.artifact_file(name, version, "evaluation.json")
    ev = json.loads(path.read_text()) if path else {}
    window = (ev.get("windows") or {}).get("train")
    days = (dt.date.fromisoformat(window[1]) - dt.date.fromisoformat(window[0])).days + 1 if window else None
    rows = next(iter(prof.values()))["rows"] if prof else 0
    return {"profile": prof, "score": ev.get("score_profile"), "rows_per_day": rows / days if days else None}


def serving_version(ctx: StepContext, registry) -> tuple[str | None, str | None]:
    """(version, served_by) of the model that served the day (its scoring record, ``<run>/lineage/score.json``);
    the champion when the day was not scored; (None, None) without either."""
    record = ctx.run_dir / "lineage" / "score.json"
    counts = json.loads(record.read_text()).get("counts", {}) if record.exists() else {}
    if counts.get("model_version"):
        return counts["model_version"], counts.get("served_by")
    alias = registry.alias(ctx.dataset.name, "champion")
    return (alias["version"], None) if alias else (None, None)


def prediction_rows(predictions: DataFrame, score_ref: dict[str, Any] | None, served_by: str | None,
                    p: dict[str, Any]) -> tuple[list[dict], dict | None]:
    """The served scores' PSI (and mean) against the holdout's score bins; not compared when the baseline
    served (its scores have no model reference). Returns (rows, the day's score counts)."""
    if not score_ref or not served_by or served_by.endswith("baseline"):
        return [_row("prediction_drift", "psi", None, "score", breached=False,
                     detail=f"not compared: served by {served_by or 'nothing'}")], None
    cur = bin_counts(predictions.select("score"), {"score": {"kind": "numeric", "edges": score_ref["edges"]}})["score"]
    if cur["rows"] < int(p.get("min_rows", 100)):
        return [_row("prediction_drift", "psi", None, "score", breached=False, detail=f"not judged: {cur['rows']} rows")], cur
    t = _thresholds(p)["psi"]
    d = distances(score_ref, cur)
    return [_row("prediction_drift", "psi", d["psi"], "score", threshold=t, breached=d["psi"] > t),
            _row("prediction_drift", "wasserstein", d.get("wasserstein"), "score")], cur


def realized_rows(spark, ctx: StepContext, subject: dt.date, threshold: float, p: dict[str, Any]) -> list[dict]:
    """Realized AUC, PR-AUC and ECE (a regression: RMSE, MAE and R²; multiclass: log loss and macro-F1) of what served ``subject`` (its labels
    all matured by this run's cutoff), overall against the bars of ``monitor.realized`` and per slice, and the
    gate's fairness checks."""
    from jobs.evaluate import fairness_checks, overall_metrics
    from jobs.features import attr_col, label_examples
    from jobs.model import PROBABILITIES
    spec, r = ctx.dataset, dict(p.get("realized") or {})
    key, label = spec.example_source.key, spec.label.name
    table = delta_io.read_pinned(spark, ctx.table("predictions"), ctx.reads, "predictions")
    probs = [PROBABILITIES] if PROBABILITIES in table.columns else []  # a multiclass model's
    preds = (table.where(delta_io.ds_predicate(subject, subject))
             .select(key, "ds", spec.example_source.event_time, "score", *probs, "model_version"))
    if not preds.limit(1).count():
        return [_row("performance", "n", 0, subject=subject, breached=False, detail="not judged: the day was not scored")]
    attrs = list(dict.fromkeys([*spec.sensitive, *spec.slices]))
    inline = [spec.label.inline_column] if spec.label.inline_column else []
    feats = (delta_io.read_pinned(spark, ctx.table("features"), ctx.reads, "features")
             .where(delta_io.ds_predicate(subject, subject)).select(key, *[attr_col(a) for a in attrs], *inline))
    labels = None
    if spec.label.source:
        name = f"silver_{spec.label.source}"
        labels = delta_io.read_pinned(spark, ctx.table(name), ctx.reads, name)
    rows = label_examples(preds.join(feats, key, "left"), spec, ctx.cutoff, labels, policy="exclude")
    rows = rows.where(F.col(label).isNotNull()).withColumn(label, F.col(label).cast("double")).cache()
    versions = [x[0] for x in rows.groupBy("model_version").count().orderBy(F.desc("count")).collect()]
    by_rows = spec.task != "binary"  # judged on rows, not positives: a regression or a multiclass model
    m = overall_metrics(rows, label, threshold, 0.01, spec.task, classes=spec.label.classes) if versions else {"n": 0, "n_pos": 0}
    min_pos, min_rows = int(r.get("min_positives", 10)), int(r.get("min_rows", p.get("min_rows", 100)))
    if not m["n"] or (by_rows and m["n"] < min_rows) or (not by_rows and (m.get("n_pos") or 0) < min_pos):
        rows.unpersist()
        why = (f"{m['n']} labelled row(s), min_rows {min_rows}" if by_rows else
               f"{int(m.get('n_pos') or 0)} positive(s), min_positives {min_pos}")
        return [_row("performance", "n", m["n"], subject=subject, breached=False,
                     detail=f"not judged: {why}" if m["n"] else "not judged: no labelled prediction of the day")]
    # metric -> (bar, worse when above it)
    bars = {"regression": {"rmse": (r.get("max_rmse"), True), "mae": (r.get("max_mae"), True), "r2": (r.get("min_r2"), False)},
            "multiclass": {"logloss": (r.get("max_logloss"), True), "macro_f1": (r.get("min_macro_f1"), False),
                           "accuracy": (None, False)},
            }.get(spec.task, {"auc": (r.get("min_auc"), False), "pr_auc": (r.get("min_pr_auc"), False), "ece": (r.get("max_ece"), True)})
    out = [_row("performance", "n", m["n"], subject=subject)]
    if not by_rows:
        out.append(_row("performance", "n_pos", m["n_pos"], subject=subject))
    for metric, (bar, above) in bars.items():
        v = m.get(metric)
        worse = v is not None and bar is not None and (v > float(bar) if above else v < float(bar))
        out.append(_row("performance", metric, v, subject=subject, threshold=bar, breached=worse,
                        detail=f"served by {', '.join(versions)}"))
    ev = {**ctx.params.get("evaluate", {}), "bootstrap_replicates": int(r.get("bootstrap_replicates", 0))}
    slices, checks = fairness_checks(rows, label, threshold, list(spec.sensitive), ev, seed=int(r.get("seed", 0)),
                                     task=spec.task, classes=spec.label.classes)
    rows.unpersist()
    for s in slices:
        for metric in bars:
            out.append(_row("performance", metric, s.get(metric), slice_=f"{s['attribute']}={s['value']}", subject=subject,
                            detail=f"n {s['n']}" + ("" if by_rows else f", positives {s['n_pos']}")))
    for c in checks:
        metric, _, attr = c["name"].partition("[")
        out.append(_row("fairness", metric, c["value"], slice_=attr.rstrip("]") or None, subject=subject,
                        threshold=c["threshold"], breached=not c["passed"] and c["severity"] == "blocking",
                        detail=c["severity"]))
    return out


def quality_rows(run_dir, history_warned: dict[str, int], window: int) -> list[dict]:
    """The day's validation, per table: failed warning and critical expectations (each failed warning a row
    too), and ``warning_days``: on how many of the last ``window`` days (``history_warned``: the earlier
    ones) the table had failed warnings."""
    rows = []
    for path in sorted((run_dir / "validation").glob("silver_*.json")):
        doc, table = json.loads(path.read_text()), path.stem
        warned = len(doc.get("failed_warning") or [])
        rows += [_row("data_quality", "failed_critical", len(doc.get("failed_critical") or []), slice_=table,
                      breached=bool(doc.get("failed_critical"))),
                 _row("data_quality", "failed_warnings", warned, slice_=table),
                 _row("data_quality", "warning_days", history_warned.get(table, 0) + (warned > 0), slice_=table,
                      detail=f"days with failed warnings among the last {window}")]
        rows += [_row("data_quality", f"warning:{c.get('expectation')}", 1, c.get("column"), table, breached=True,
                      detail=json.dumps(c.get("observed") or c.get("result"), default=str)[:300] if c.get("observed") or c.get("result") else None)
                 for c in doc.get("failed_warning") or []]
    return rows


def history(spark, path: str, ds: dt.date, window: int, cooldown: int, realized_days: int = 90) -> dict[str, Any]:
    """From the monitoring table's days before ``ds``: the signals on per day and, per table, the days with
    failed warnings (of the ``window`` days ending with ``ds``), the last day retraining was triggered (within
    ``cooldown`` days), and the realized overall metrics of the last ``realized_days`` (the newest figure
    per matured day, for the report). One read."""
    out: dict[str, Any] = {"on": {}, "last_trigger": None, "warned": {}, "realized": {}}
    if not delta_io.is_delta(spark, path):
        return out
    since = lambda days: F.col("ds") > F.lit(ds - dt.timedelta(days=days))  # noqa: E731
    wanted = ((F.col("kind") == "signal") & F.col("breached") & since(window)
              | (F.col("kind") == "trigger") & F.col("breached") & since(cooldown)
              | (F.col("kind") == "data_quality") & (F.col("metric") == "failed_warnings") & (F.col("value") > 0) & since(window)
              | (F.col("kind") == "performance") & F.col("slice").isNull() & F.col("metric").isin(*REALIZED)
              & F.col("value").isNotNull())
    rows = (spark.read.format("delta").load(path)
            .where(delta_io.ds_predicate(ds - dt.timedelta(days=max(window, cooldown, realized_days)), ds - dt.timedelta(days=1)))
            .where(wanted).select("ds", "subject_ds", "kind", "metric", "slice", "value").collect())
    triggers = []
    for r in rows:
        if r["kind"] == "signal":
            out["on"].setdefault(r["ds"], set()).add(r["metric"])
        elif r["kind"] == "trigger":
            triggers.append(r["ds"])
        elif r["kind"] == "data_quality":
            out["warned"][r["slice"]] = out["warned"].get(r["slice"], 0) + 1
        else:
            key = (r["metric"], r["subject_ds"])
            if key not in out["realized"] or r["ds"] > out["realized"][key][0]:
                out["realized"][key] = (r["ds"], r["value"])
    out["last_trigger"] = max(triggers) if triggers else None
    return out


def realized_series(past: dict[tuple[str, dt.date], tuple[dt.date, float]], today: list[dict]) -> dict[str, list[tuple[str, float]]]:
    """Realized AUC and PR-AUC (RMSE and R²) per matured day: the earlier days' figures (``history``) and
    today's rows."""
    merged = dict(past)
    for r in today:
        if r["kind"] == "performance" and r["slice"] is None and r["metric"] in REALIZED and r["value"] is not None:
            merged[(r["metric"], r["subject_ds"])] = (None, r["value"])
    out: dict[str, list[tuple[str, float]]] = {}
    for (metric, day), (_, v) in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        out.setdefault(metric, []).append((day.isoformat(), v))
    return out


def _top(reference: dict, counts: dict, rows: list[dict], n: int) -> list[dict]:
    """The ``n`` features with the largest PSI, with both distributions' shares for the report."""
    stats = {(r["feature"], r["metric"]): r["value"] for r in rows if r["kind"] == "feature_drift"}
    ranked = sorted((f for f in counts if stats.get((f, "psi")) is not None), key=lambda f: -stats[(f, "psi")])[:n]
    out = []
    for f in ranked:
        ref = reference[f]
        second = "wasserstein" if ref["kind"] == "numeric" else "js_distance"
        out.append({"feature": f, "labels": _bin_labels(ref), "reference": list(shares(ref["counts"])),
                    "day": list(shares(counts[f]["counts"])), "psi": stats[(f, "psi")], "second": second,
                    "distance": stats.get((f, second))})
    return out


def _bin_labels(ref: dict[str, Any]) -> list[str]:
    if ref["kind"] != "numeric":
        return [str(v) for v in ref["values"]] + ["other"]
    e = [f"{x:.3g}" for x in ref["edges"]]
    return ([f"<{e[0]}"] + [f"{a}-{b}" for a, b in zip(e, e[1:])] + [f">={e[-1]}"]) if e else ["all"]


# ---------------------------------------------------------------- shell
def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    from jobs.registry import open_registry
    from jobs.report import render_drift
    spark = get_spark(ctx.settings, "monitor")
    spec, p = ctx.dataset, ctx.step_params()
    t = dict(p.get("trigger") or {})
    window = int(t.get("window_days", 3))
    registry = open_registry(ctx.settings.registry)
    chosen = ctx.params.get("score", {}).get("threshold")
    threshold = float(chosen if chosen is not None else ctx.params.get("evaluate", {}).get("threshold", 0.5))
    past = history(spark, ctx.table("monitoring"), ctx.ds, window, int(t.get("cooldown_days", 7)))
    rows = quality_rows(ctx.run_dir, past["warned"], window)
    version, served_by = serving_version(ctx, registry)
    top, score_doc, n = [], None, 0
    if version is None:
        print(f"monitor {spec.name} ds {ctx.ds}: no model has served or been published yet; data quality only")
    else:
        ref = reference(registry, spec.name, version)
        feats = delta_io.read_pinned(spark, ctx.table("features"), ctx.reads, "features").where(delta_io.ds_predicate(ctx.ds, ctx.ds)) \
            if delta_io.is_delta(spark, ctx.table("features")) else None
        present = {c: b for c, b in bins(ref["profile"]).items() if feats is not None and c in feats.columns}
        counts = bin_counts(feats, present, local_files(spark, feats, ctx.table("features"))) if present else {}
        n = next(iter(counts.values()))["rows"] if counts else 0
        rows += drift_rows(ref["profile"], counts, p, calendar_features(spec)) if n else [
            _row("feature_drift", "drifted", None, breached=False, detail="no validated example of the day in features")]
        rows += volume_rows(n, ref["rows_per_day"], p)
        preds = delta_io.read_pinned(spark, ctx.table("predictions"), ctx.reads, "predictions").where(
            delta_io.ds_predicate(ctx.ds, ctx.ds)) if delta_io.is_delta(spark, ctx.table("predictions")) else None
        pred_rows, score_counts = prediction_rows(preds, ref["score"], served_by, p) if preds is not None else (
            [_row("prediction_drift", "psi", None, "score", breached=False, detail="not compared: no predictions")], None)
        rows += pred_rows
        subject = ctx.ds - dt.timedelta(days=spec.label.maturity_days)
        rows += realized_rows(spark, ctx, subject, threshold, p) if preds is not None else []
        top = _top(ref["profile"], counts, rows, int(p.get("report_top", 5)))
        if score_counts and ref["score"]:
            score_doc = {"labels": _bin_labels(ref["score"]), "reference": list(shares(ref["score"]["counts"])),
                         "day": list(shares(score_counts["counts"])),
                         "psi": next(r["value"] for r in pred_rows if r["metric"] == "psi")}
    signals = day_signals(rows, p)
    retrain, why = decide(ctx.ds, signals, past["on"], past["last_trigger"], p)
    rows += [_row("signal", s, v["value"] if isinstance(v["value"], (int, float)) else None, breached=v["on"], detail=v["detail"])
             for s, v in signals.items()]
    rows.append(_row("trigger", "retrain", float(retrain), breached=retrain, detail=why))
    table = [(ctx.ds, r["subject_ds"] or ctx.ds, version, r["kind"], r["metric"], r["feature"], r["slice"], r["value"],
              r["threshold"], r["breached"], r["detail"]) for r in rows]
    delta_io.replace_partitions(spark.createDataFrame(table, SCHEMA), ctx.table("monitoring"), ctx.ds, ctx.ds,
                                writes=ctx.writes, name="monitoring")
    verdict = {"dataset": spec.name, "ds": ctx.ds.isoformat(), "model_version": version, "served_by": served_by, "rows": n,
               "retrain": retrain, "reason": why, "signals": signals, "run_id": ctx.run_id}
    out = storage.join(ctx.run_uri, "monitor")
    storage.write_bytes(storage.join(out, VERDICT), json.dumps(verdict, indent=2, default=str).encode())
    bars = {m: (p.get("realized") or {}).get(k) for m, k in (("auc", "min_auc"), ("pr_auc", "min_pr_auc"),
                                                              ("rmse", "max_rmse"), ("r2", "min_r2"),
                                                              ("logloss", "max_logloss"), ("macro_f1", "min_macro_f1"))}
    page = render_drift({**verdict, "top": top, "score": score_doc, "realized": realized_series(past["realized"], rows), "bars": bars,
                         "rows_table": [r for r in rows if r["kind"] in ("feature_drift", "prediction_drift", "null_rate", "volume")
                                        and r["value"] is not None]})
    storage.write_bytes(storage.join(out, REPORT), page.encode())
    ctx.rows, ctx.figure = n, (f"RETRAIN: {why}" if retrain else "no retraining")[:160]
    ctx.counts.update({"rows": n, "model_version": version, "retrain": retrain, "reason": why,
                       "signals": {s: v["on"] for s, v in signals.items()}, "figures": len(rows)})
    print(f"monitor {spec.name} ds {ctx.ds}: " + ", ".join(f"{s} {'ON' if v['on'] else 'off'}" for s, v in signals.items())
          + f" -> {'RETRAIN: ' if retrain else 'no retraining: '}{why}; report {storage.join(out, REPORT)}")


def print_verdict(argv: list[str] | None = None) -> None:
    """``--verdict``: the reason on stdout and exit 0 when the day's verdict is to retrain, exit 97 when not;
    a day not monitored is an error (exit 2). Reads ``<run>/monitor/verdict.json`` only (no Spark)."""
    from jobs.common.cli import build_context
    args = parser("monitor", __doc__).parse_args([a for a in (argv or sys.argv[1:]) if a != "--verdict"])
    try:
        ctx = build_context("monitor", args)
        folder = storage.join(ctx.run_uri, "monitor")
        if VERDICT not in storage.names(folder):
            raise ConfigError(f"no verdict for ds {ctx.ds} at {folder}: run python -m jobs.monitor --ds {ctx.ds} first")
        verdict = json.loads(storage.read_bytes(storage.join(folder, VERDICT)))
    except TrainyardError as e:
        print(f"trainyard monitor FAILED [{type(e).__name__}]: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    if not verdict["retrain"]:
        print(f"monitor {ctx.dataset.name} ds {ctx.ds}: no retraining: {verdict['reason']}")
        sys.exit(NO_RETRAIN_EXIT)
    print(f"monitor {ctx.dataset.name} ds {ctx.ds}: retraining due", file=sys.stderr)
    print(f"monitor_pipeline ds {ctx.ds}: {verdict['reason']}")  # the last line: the trigger's reason (XCom)


def main(argv: list[str] | None = None) -> None:
    if "--verdict" in (argv if argv is not None else sys.argv[1:]):
        print_verdict(argv)
        return
    run_step("monitor", run, argv, __doc__)


if __name__ == "__main__":
    main()
