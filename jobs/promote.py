"""Promote: decide whether the challenger replaces the champion, from what both scored in the shadow.

The scoring DAG scores the ``challenger`` beside the serving champion on the same rows of every day
(``shadow_predictions`` next to ``predictions``). Once the labels of at least ``promote.min_days`` of those
days have matured (every example of the day at least ``label.maturity_days`` old at this run's cutoff),
this step compares the two on exactly the same labelled rows: the rows the champion itself served (not a
fallback) and the challenger scored, of the matured days only, and only of days after either model's
valid window (a day a model was fitted or early-stopped on would flatter it). It measures

- AUC and PR-AUC of both (a regression: RMSE and MAE; multiclass: log loss and accuracy), and their
  differences with a paired bootstrap 95% interval (one resample of the rows measures both models,
  ``metrics.paired_replicates``, ``paired_regression_replicates``, ``paired_logloss_replicates``);
- how often their decisions agree at the threshold (binary);
- the challenger's per-slice metrics and the evaluation gate's fairness checks on those rows (the same
  thresholds, ``evaluate.gate``; ``warn_only`` ones recorded, not refusing).

and decides, saying why:

- ``retire`` when a blocking fairness check fails, when the AUC difference's interval lies below zero, or
  when ``max_days`` matured days brought no clear gain: the challenger alias is cleared (logged);
- ``promote`` when the AUC difference's interval lies above ``min_auc_gain`` and PR-AUC is not clearly
  worse (a regression: the RMSE difference's below -``min_rmse_gain`` x the champion's RMSE, MAE not
  clearly worse; multiclass: the log loss difference's below -``min_logloss_gain`` x the champion's): the champion moves to the challenger by compare-and-swap from the champion it was compared with
  (logged), and the challenger alias is cleared;
- ``wait`` otherwise (too few matured days, or an interval across the bar).

Each decision is a row of ``shadow_decisions`` (partition ds, replaced on rerun) and ``<run>/promote/
decision.json``. No challenger: nothing to decide."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.files import write_json_atomic
from jobs.evaluate import fairness_checks, overall_metrics
from jobs.features import attr_col, inline_label, label_examples
from jobs.metrics import interval, paired_logloss_replicates, paired_regression_replicates, paired_replicates
from jobs.model import PROBABILITIES

DECISIONS = ("promote", "wait", "retire")
SCORES = ("champion_score", "challenger_score")
COMPARED = {"binary": ("n", "n_pos", "auc", "pr_auc", "recall", "precision", "fpr"),  # each model's figures, per task
            "regression": ("n", "rmse", "mae", "r2", "mean_residual"), "multiclass": ("n", "logloss", "accuracy", "macro_f1")}


def fitted_until(registry, name: str, versions: list[str]) -> dt.date | None:
    """The last day any of ``versions`` was fitted or early-stopped on (the end of its valid window, from the
    evaluation published with it): rows of that day or before would flatter it, so they are not compared."""
    ends = []
    for version in versions:
        path = registry.artifact_file(name, version, "evaluation.json")
        windows = json.loads(path.read_text()).get("windows") if path else None
        if windows and windows.get("valid"):
            ends.append(dt.date.fromisoformat(windows["valid"][1]))
    return max(ends) if ends else None


def shadow_rows(predictions: DataFrame, shadow: DataFrame, examples: DataFrame, spec, champion: str, challenger: str,
                ds: dt.date, after: dt.date | None = None) -> DataFrame:
    """The rows both models scored up to ``ds`` (and after ``after``): served by ``champion`` itself and
    shadow-scored by ``challenger``, with the example's slice columns (and inline label) from ``examples``."""
    key = spec.example_source.key
    days = (F.col("ds") <= F.lit(ds)) & ((F.col("ds") > F.lit(after)) if after else F.lit(True))
    served = (predictions.where((F.col("served_by") == "champion") & (F.col("model_version") == champion) & days)
              .select(key, "ds", spec.example_source.event_time, F.col("score").alias("champion_score"),
                      F.col("decision").alias("champion_decision"), *_probabilities(predictions, "champion")))
    shadowed = (shadow.where((F.col("model_version") == challenger) & (F.col("serving_version") == champion) & days)
                .select(key, "ds", F.col("score").alias("challenger_score"), F.col("decision").alias("challenger_decision"),
                        *_probabilities(shadow, "challenger")))
    attrs = [F.col(a).cast("string").alias(attr_col(a)) for a in dict.fromkeys([*spec.sensitive, *spec.slices])]
    inline = inline_label(spec, examples)
    return served.join(shadowed, [key, "ds"]).join(examples.select(key, "ds", *attrs, *inline), [key, "ds"], "left")


def _probabilities(df: DataFrame, role: str) -> list:
    """A multiclass model's class probabilities, as ``<role>_probabilities`` (none for the other tasks)."""
    return [F.col(PROBABILITIES).alias(f"{role}_{PROBABILITIES}")] if PROBABILITIES in df.columns else []


def matured(rows: DataFrame, spec, cutoff: dt.datetime, labels: DataFrame | None) -> tuple[DataFrame, list[dt.date], list[dt.date]]:
    """(the rows of the days whose labels all matured by ``cutoff``, labelled; those days; every shadow day)."""
    days = sorted(r["ds"] for r in rows.select("ds").distinct().collect())
    last = (cutoff - dt.timedelta(days=spec.label.maturity_days + 1)).date()  # its examples are all old enough
    done = [d for d in days if d <= last]
    labelled = label_examples(rows.where(F.col("ds") <= F.lit(last)), spec, cutoff, labels, policy="exclude")
    return labelled.where(F.col(spec.label.name).isNotNull()), done, days


def compare(rows: DataFrame, label: str, threshold: float, p: dict[str, Any], ev: dict[str, Any], sensitive: list[str],
            task: str = "binary", classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Both models' metrics on ``rows`` (cached by the caller), their paired differences with intervals
    (binary: AUC and PR-AUC; regression: RMSE and MAE; multiclass: log loss and accuracy), decision agreement
    (binary), and the challenger's fairness checks (the gate's)."""
    metrics = {}
    replicates, seed = int(p.get("bootstrap_replicates", 500)), int(p.get("seed", 0))
    for name in SCORES:
        role = name.split("_")[0]
        scored = rows.withColumn("score", F.col(name))
        if task == "multiclass":
            scored = scored.withColumn(PROBABILITIES, F.col(f"{role}_{PROBABILITIES}"))
        m = overall_metrics(scored, label, threshold, 0.01, task, weight=None, classes=classes)
        metrics[role] = {k: m.get(k) for k in COMPARED[task]}
    if task == "multiclass":
        reps = paired_logloss_replicates(rows, label, tuple(f"{r}_{PROBABILITIES}" for r in ("champion", "challenger")),
                                         replicates, seed)
        compared, agree = ("logloss", "accuracy"), None
    elif task == "regression":
        reps, compared, agree = paired_regression_replicates(rows, label, SCORES, replicates, seed), ("rmse", "mae"), None
    else:
        reps, compared = paired_replicates(rows, label, SCORES, replicates=replicates, seed=seed), ("auc", "pr_auc")
        agree = rows.select(F.avg((F.col("champion_decision") == F.col("challenger_decision")).cast("double"))).first()[0]
    diff = {}
    for m in compared:
        a, b = metrics["champion"][m], metrics["challenger"][m]
        diff[m] = None if a is None or b is None else b - a
        diff[f"{m}_ci"] = interval(reps[m][1] - reps[m][0])
    chal = rows.withColumn("score", F.col("challenger_score")).withColumn("weight", F.lit(1.0))
    if task == "multiclass":
        chal = chal.withColumn(PROBABILITIES, F.col(f"challenger_{PROBABILITIES}"))
    slices, checks = fairness_checks(chal, label, threshold, sensitive, ev, seed=seed, task=task, classes=classes)
    return {"metrics": metrics, "difference": diff, "decision_agreement": agree, "fairness_checks": checks,
            "slices": slices}


def decide(days: int, result: dict[str, Any] | None, p: dict[str, Any]) -> tuple[str, str]:
    """(decision, why) from the matured shadow days and the comparison (pure)."""
    min_days, max_days, gain = int(p.get("min_days", 3)), int(p.get("max_days", 14)), float(p.get("min_auc_gain", 0.0))
    if days < min_days or result is None:
        return "wait", f"labels have matured for {days} shadow day(s), {min_days} needed"
    failed = [c["name"] for c in result["fairness_checks"] if not c["passed"] and c["severity"] == "blocking"]
    if failed:
        return "retire", f"fails the fairness check(s) {', '.join(failed)} on the shadow rows"
    if "rmse" in result["difference"]:
        return _decide_loss(days, result, p, "rmse", "mae", float(p.get("min_rmse_gain", 0.0)))
    if "logloss" in result["difference"]:
        return _decide_loss(days, result, p, "logloss", None, float(p.get("min_logloss_gain", 0.0)))
    d, ci, pr_ci = result["difference"]["auc"], result["difference"]["auc_ci"], result["difference"]["pr_auc_ci"]
    if d is None or ci is None:
        return "wait", "the AUC difference is not defined on these rows (one class only)"
    said = (f"AUC challenger {result['metrics']['challenger']['auc']:.4f} vs champion "
            f"{result['metrics']['champion']['auc']:.4f} on {result['metrics']['champion']['n']} rows of {days} day(s): "
            f"difference {d:+.4f}, 95% interval [{ci[0]:+.4f}, {ci[1]:+.4f}]")
    if ci[0] > gain and (pr_ci is None or pr_ci[1] >= 0):
        return "promote", f"better: {said}, above {gain:+.4f}"
    if ci[1] < 0:
        return "retire", f"worse: {said}, below 0"
    if days >= max_days:
        return "retire", f"no clear gain after {days} matured shadow days (max_days {max_days}): {said}"
    return "wait", f"not decided yet: {said}"


def _decide_loss(days: int, result: dict[str, Any], p: dict[str, Any], loss: str, second: str | None,
                 gain: float) -> tuple[str, str]:
    """A decision on a loss's difference (challenger - champion; below 0: better; a regression's RMSE, with
    MAE as the second; a multiclass model's log loss): promote when its interval lies below -``gain`` x the
    champion's loss and the second is not clearly worse, retire when it lies above 0 or after ``max_days``
    with no clear gain."""
    max_days = int(p.get("max_days", 14))
    d, ci = result["difference"][loss], result["difference"][f"{loss}_ci"]
    second_ci = result["difference"].get(f"{second}_ci") if second else None
    champ, chal = result["metrics"]["champion"], result["metrics"]["challenger"]
    name = {"rmse": "RMSE", "logloss": "log loss"}.get(loss, loss)
    if d is None or ci is None:
        return "wait", f"the {name} difference is not defined on these rows"
    said = (f"{name} challenger {chal[loss]:.4f} vs champion {champ[loss]:.4f} on {champ['n']} rows of {days} day(s): "
            f"difference {d:+.4f}, 95% interval [{ci[0]:+.4f}, {ci[1]:+.4f}]")
    bar = -gain * champ[loss]
    if ci[1] < bar and (second_ci is None or second_ci[0] <= 0):
        return "promote", f"better: {said}, below {bar:+.4f}"
    if ci[0] > 0:
        return "retire", f"worse: {said}, above 0"
    if days >= max_days:
        return "retire", f"no clear gain after {days} matured shadow days (max_days {max_days}): {said}"
    return "wait", f"not decided yet: {said}"


def act(registry, name: str, decision: str, why: str, champion: str, challenger: str) -> None:
    """The registry side of a decision: moves logged as events (compare-and-swap from what was compared)."""
    if decision == "promote":
        registry.set_alias(name, "champion", challenger, reason=f"promoted from the shadow: {why}", expect=champion,
                           event="promote")
        registry.clear_alias(name, "challenger", reason=f"promoted to champion: {why}", expect=challenger,
                             event="promoted")
    elif decision == "retire":
        registry.clear_alias(name, "challenger", reason=f"retired: {why}", expect=challenger, event="retire")


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    from jobs.registry import open_registry
    spec, p = ctx.dataset, ctx.step_params()
    registry = open_registry(ctx.settings.registry)
    challenger, champion = registry.alias(spec.name, "challenger"), registry.alias(spec.name, "champion")
    if not challenger or not champion:
        print(f"promote {spec.name} ds {ctx.ds}: no challenger in the shadow; nothing to decide")
        ctx.counts["decision"] = None
        ctx.figure = "no challenger in the shadow"
        return
    spark = get_spark(ctx.settings, "promote")
    ev = ctx.params.get("evaluate", {})
    chosen = ctx.params.get("score", {}).get("threshold")
    threshold = float(chosen if chosen is not None else ev.get("threshold", 0.5))  # the one scoring decided at
    tables = {n: delta_io.read_pinned(spark, ctx.table(n), ctx.reads, n)
              for n in ("predictions", "shadow_predictions", f"silver_{spec.example_source.name}")}
    labels = (delta_io.read_pinned(spark, ctx.table(f"silver_{spec.label.source}"), ctx.reads, f"silver_{spec.label.source}")
              if spec.label.source else None)
    after = fitted_until(registry, spec.name, [champion["version"], challenger["version"]])
    rows = shadow_rows(tables["predictions"], tables["shadow_predictions"], tables[f"silver_{spec.example_source.name}"],
                       spec, champion["version"], challenger["version"], ctx.ds, after)
    labelled, done, days = matured(rows, spec, ctx.cutoff, labels)
    labelled = labelled.cache()
    result = compare(labelled, spec.label.name, threshold, p, ev, list(spec.sensitive), spec.task, spec.label.classes) \
        if len(done) >= int(p.get("min_days", 3)) else None
    decision, why = decide(len(done), result, p)
    act(registry, spec.name, decision, why, champion["version"], challenger["version"])
    labelled.unpersist()
    doc = {"ds": ctx.ds.isoformat(), "decision": decision, "why": why, "champion": champion["version"],
           "challenger": challenger["version"], "compared_after": after and after.isoformat(),
           "shadow_days": [d.isoformat() for d in days],
           "matured_days": [d.isoformat() for d in done], **(result or {})}
    write_json_atomic(ctx.run_dir / "promote" / "decision.json", doc)
    record = spark.createDataFrame(
        [(ctx.ds, ctx.run_id, spec.name, champion["version"], challenger["version"], decision, why, len(days), len(done),
          json.dumps({k: doc.get(k) for k in ("metrics", "difference", "decision_agreement")}, default=str),
          json.dumps([c["name"] for c in (result or {}).get("fairness_checks", []) if not c["passed"]]))],
        "ds date, run_id string, model string, champion string, challenger string, decision string, why string, "
        "shadow_days int, matured_days int, comparison string, failed_checks string")
    delta_io.replace_partitions(record, ctx.table("shadow_decisions"), ctx.ds, ctx.ds, writes=ctx.writes,
                                name="shadow_decisions")
    ctx.counts.update({"decision": decision, "why": why, "challenger": challenger["version"]})
    ctx.figure = f"{decision.upper()} challenger {challenger['version']}"
    print(f"promote {spec.name} ds {ctx.ds}: {decision.upper()} challenger {challenger['version']} "
          f"(champion {champion['version']}): {why}")


def main(argv: list[str] | None = None) -> None:
    run_step("promote", run, argv, __doc__)


if __name__ == "__main__":
    main()
