"""Evaluate: score the holdout window of this run's training set with the trained artifact (and with the
current champion, on the same rows), compute metrics overall and per slice of every sensitive attribute and
configured slice column, fairness gaps, and run the gate. Always writes a blessing JSON with each check's
value, threshold and verdict, an HTML report, and metrics/plot JSON that ``dvc metrics``/``dvc plots`` read.

Gate modes (params ``evaluate.gate.mode``): ``enabled`` (failing checks refuse), ``dry_run`` (checks are
reported but the model is blessed), ``disabled`` (no checks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import report
from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.errors import ConfigError, DataError
from jobs.common.files import sha256_file, write_json_atomic
from jobs.features import attr_col
from jobs.metrics import binary_metrics, curve_points

GATE_MODES = ("enabled", "dry_run", "disabled")
HEADLINE = ("n", "n_pos", "n_neg", "auc", "pr_auc", "logloss", "brier", "precision", "recall", "f1", "fpr", "prevalence", "mean_score")


def score(df: DataFrame, model_bytes: bytes, names: list[str], types: list[str], out: str = "score") -> DataFrame:
    """Add the model's probability as ``out``, computed on the executors (the booster is shipped as bytes)."""
    sc = df.sparkSession.sparkContext
    bc = sc.broadcast(model_bytes)
    from pyspark.sql.types import DoubleType, StructField, StructType
    schema = StructType([*df.schema.fields, StructField(out, DoubleType())])  # df.schema.add would mutate df

    def predict(batches):
        import numpy as np
        import xgboost as xgb
        booster = xgb.Booster()
        booster.load_model(bytearray(bc.value))
        for pdf in batches:
            if len(pdf) == 0:
                continue
            x = xgb.DMatrix(pdf[names].astype("float32"), feature_types=types, enable_categorical=True, missing=np.nan)
            yield pdf.assign(**{out: booster.predict(x).astype("float64")})

    return df.mapInPandas(predict, schema)


def gate(metrics: dict[str, Any], champion: dict[str, Any] | None, fairness: list[dict], p: dict[str, Any],
         importance: dict[str, float] | None = None, golden: dict[str, Any] | None = None) -> list[dict]:
    """Each check: name, value, op, threshold, passed. Absolute, relative-to-champion, fairness and leakage
    checks (an AUC too good to be true, one feature carrying the model)."""
    checks = []

    def check(name: str, value: float | None, op: str, threshold: float) -> None:
        passed = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        checks.append({"name": name, "value": value, "op": op, "threshold": threshold, "passed": bool(passed)})

    if "min_auc" in p:
        check("auc", metrics.get("auc"), ">=", float(p["min_auc"]))
    if "min_pr_auc" in p:
        check("pr_auc", metrics.get("pr_auc"), ">=", float(p["min_pr_auc"]))
    if "max_auc" in p:
        check("auc_below_leakage_ceiling", metrics.get("auc"), "<=", float(p["max_auc"]))
    if "max_top_feature_share" in p and importance:
        check(f"top_feature_gain_share[{max(importance, key=importance.get)}]",
              max(importance.values()) / sum(importance.values()), "<=", float(p["max_top_feature_share"]))
    if "max_logloss" in p:
        check("logloss", metrics.get("logloss"), "<=", float(p["max_logloss"]))
    if champion and champion.get("overall") and "max_auc_drop_vs_champion" in p:
        delta = None if metrics.get("auc") is None else metrics["auc"] - champion["overall"]["auc"]
        check("auc_minus_champion_auc", delta, ">=", -float(p["max_auc_drop_vs_champion"]))
    if golden:  # regression check on the pinned golden set
        if "min_golden_auc" in p:
            check(f"golden_auc[v{golden['version']}]", golden["challenger_auc"], ">=", float(p["min_golden_auc"]))
        if golden.get("champion_auc") is not None and "max_golden_auc_drop_vs_champion" in p:
            check(f"golden_auc_minus_champion[v{golden['version']}]", golden["challenger_auc"] - golden["champion_auc"],
                  ">=", -float(p["max_golden_auc_drop_vs_champion"]))
    for f in fairness:
        if "max_slice_auc_gap" in p and f["auc_gap"] is not None:
            check(f"auc_gap[{f['attribute']}]", f["auc_gap"], "<=", float(p["max_slice_auc_gap"]))
        if "max_demographic_parity_difference" in p and f["demographic_parity_difference"] is not None:
            check(f"demographic_parity_difference[{f['attribute']}]", f["demographic_parity_difference"], "<=",
                  float(p["max_demographic_parity_difference"]))
    return checks


def bless(checks: list[dict], mode: str, sha: str) -> dict[str, Any]:
    if mode not in GATE_MODES:
        raise ConfigError(f"params evaluate.gate.mode '{mode}' is not one of {GATE_MODES}")
    failed = [c["name"] for c in checks if not c["passed"]]
    blessed = mode != "enabled" or not failed
    return {"blessed": blessed, "mode": mode, "artifact_sha256": sha, "checks": checks if mode != "disabled" else [],
            "failed": failed if mode != "disabled" else [],
            "reasons": ([f"failed: {', '.join(failed)}"] if failed else ["all checks passed"]) if mode != "disabled" else ["gate disabled"]}


def fairness_summary(slices: list[dict], min_size: int, min_class_count: int = 10) -> list[dict]:
    """Per sensitive attribute: the largest AUC gap between its slices and the demographic parity difference
    (spread of predicted positive rates). Slices under ``min_size`` rows are left out of both; an AUC from a
    slice with fewer than ``min_class_count`` positives or negatives is noise and is left out of the gap."""
    out = []
    for attr in dict.fromkeys(s["attribute"] for s in slices):
        rows = [s for s in slices if s["attribute"] == attr and s["n"] >= min_size]
        aucs = [s["auc"] for s in rows if s["auc"] is not None
                and min(s["n_pos"], s.get("n_neg", s["n"] - s["n_pos"])) >= min_class_count]
        ppr = [s["predicted_positive_rate"] for s in rows if s["predicted_positive_rate"] is not None]
        out.append({"attribute": attr, "slices": len(rows), "auc_gap": max(aucs) - min(aucs) if len(aucs) > 1 else None,
                    "demographic_parity_difference": max(ppr) - min(ppr) if len(ppr) > 1 else None})
    return out


def slice_metrics(scored: DataFrame, label: str, attrs: list[str], threshold: float) -> list[dict]:
    rows = []
    for attr in attrs:
        for r in binary_metrics(scored.withColumn("_slice", F.coalesce(F.col(attr_col(attr)).cast("string"), F.lit("__null__"))),
                                label, threshold, ["_slice"], weight="weight"):
            rows.append({"attribute": attr, "value": r.pop("_slice"), **{k: r[k] for k in HEADLINE + ("predicted_positive_rate",)}})
    return sorted(rows, key=lambda r: (r["attribute"], str(r["value"])))


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in HEADLINE}


# ---------------------------------------------------------------- shell
def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    from jobs.registry import open_registry
    spark = get_spark(ctx.settings, "evaluate")
    spec, p = ctx.dataset, ctx.step_params()
    label, threshold = spec.label.name, float(p.get("threshold", 0.5))
    gp = dict(p.get("gate", {}))
    train_doc = json.loads((ctx.run_dir / "model" / "train.json").read_text())
    art = Path(train_doc["artifact"])
    sha = sha256_file(art)
    if sha != train_doc["sha256"]:
        raise DataError(f"{art}: sha256 {sha} differs from the one train recorded ({train_doc['sha256']})")
    names, types = train_doc["feature_names"], train_doc["feature_types"]
    model = art.read_bytes()

    ts = (delta_io.read_pinned(spark, ctx.table("training_set"), ctx.reads, "training_set")
          .where((F.col("cutoff_ds") == F.lit(ctx.ds)) & (F.col("split") == "holdout") & F.col(label).isNotNull()))
    attrs = list(dict.fromkeys([*spec.sensitive, *spec.slices]))
    holdout = ts.select(*names, F.col(label).cast("double").alias(label), F.coalesce(F.col("weight"), F.lit(1.0)).alias("weight"),
                        *[attr_col(a) for a in attrs])
    scored = score(holdout, model, names, types).cache()
    overall = binary_metrics(scored, label, threshold, weight="weight")[0]
    if not overall["n"]:
        raise DataError(f"training_set cutoff_ds={ctx.ds}: the holdout window is empty; nothing to evaluate")
    slices = slice_metrics(scored, label, attrs, threshold)
    fairness = fairness_summary([s for s in slices if s["attribute"] in spec.sensitive], int(p.get("min_slice_size", 50)),
                                int(p.get("min_slice_class_count", 10)))

    champion: dict[str, Any] = {}
    champ_model: tuple[bytes, list[str]] | None = None
    current = open_registry(ctx.settings.registry).champion(spec.name)
    if current:
        champ_version, champ_art, champ_manifest = current
        if champ_manifest.get("feature_names") == names:
            champ_model = (champ_art.read_bytes(), champ_manifest["feature_types"])
            cs = score(holdout, champ_model[0], names, champ_model[1]).cache()
            champion = {"version": champ_version, "sha256": champ_manifest["sha256"],
                        "overall": _headline(binary_metrics(cs, label, threshold, weight="weight")[0]),
                        "curves": curve_points(cs, label, weight="weight")}
            cs.unpersist()
        else:
            champion = {"version": champ_version, "note": "champion uses other features; not comparable on this holdout"}

    golden = None
    if p.get("golden_version") is not None:
        golden = golden_metrics(spark, ctx, int(p["golden_version"]), model, names, types, champ_model, threshold)
    importance = {k: float(v) for k, v in _booster_importance(model).items()}
    checks = gate(overall, champion, fairness, gp, importance, golden)
    blessing = bless(checks, gp.get("mode", "enabled"), sha)
    blessing.update({"dataset": spec.name, "ds": ctx.ds.isoformat(), "champion_version": champion.get("version")})
    lineage_dir = ctx.run_dir / "lineage"
    lineage = {f.stem: json.loads(f.read_text()).get("reads", {}) for f in sorted(lineage_dir.glob("*.json"))}
    windows = json.loads((lineage_dir / "features.json").read_text()).get("counts", {}).get("windows", {}) if (lineage_dir / "features.json").exists() else {}
    doc = {"dataset": spec.name, "ds": ctx.ds.isoformat(), "overall": _headline(overall), "threshold": threshold,
           "slices": slices, "fairness": fairness, "blessing": blessing, "importance": importance, "windows": windows,
           "curves": {"challenger": curve_points(scored, label, weight="weight"), "champion": champion.get("curves")},
           "champion": {k: v for k, v in champion.items() if k != "curves"}, "golden": golden, "lineage": lineage}
    out = ctx.run_dir / "evaluation"
    write_json_atomic(out / "blessing.json", blessing)
    write_json_atomic(out / "metrics.json", {k: v for k, v in _headline(overall).items()} | {"blessed": blessing["blessed"]})
    write_json_atomic(out / "evaluation.json", doc)
    write_plots(out / "plots", doc)
    (out / "report.html").write_text(report.render(doc))
    scored.unpersist()
    ctx.counts.update({"auc": overall["auc"], "pr_auc": overall["pr_auc"], "blessed": blessing["blessed"],
                       "failed": blessing["failed"]})
    print(f"evaluate {spec.name} ds {ctx.ds}: auc {overall['auc']:.4f} pr_auc {overall['pr_auc']:.4f} on {overall['n']} "
          f"holdout rows; {'BLESSED' if blessing['blessed'] else 'NOT BLESSED'} ({'; '.join(blessing['reasons'])}); "
          f"report {out / 'report.html'}")


def golden_metrics(spark, ctx: StepContext, version: int, model: bytes, names: list[str], types: list[str],
                   champion: tuple[bytes, list[str]] | None, threshold: float) -> dict[str, Any]:
    """Challenger (and champion) on the golden set pinned at a Delta version (made by ``jobs.golden``)."""
    label = ctx.dataset.label.name
    path = ctx.table("golden_set")
    if delta_io.latest_version(spark, path) is None:
        raise DataError(f"params evaluate.golden_version is {version} but there is no golden set at {path}: "
                        f"run python -m jobs.golden --ds <ds> first")
    df = (spark.read.format("delta").option("versionAsOf", version).load(path)
          .select(*names, F.col(label).cast("double").alias(label)))
    ctx.reads[f"golden_set@{version}"] = version
    out = {"version": version, "challenger_auc": binary_metrics(score(df, model, names, types), label, threshold)[0]["auc"]}
    if champion:
        out["champion_auc"] = binary_metrics(score(df, champion[0], names, champion[1]), label, threshold)[0]["auc"]
    return out


def write_plots(folder: Path, doc: dict[str, Any]) -> None:
    """Plot data as JSON lists, the shape ``dvc plots`` reads."""
    pts = doc["curves"]["challenger"]
    write_json_atomic(folder / "roc.json", [{"fpr": p["fpr"], "tpr": p["tpr"], "threshold": p["threshold"]} for p in pts])
    write_json_atomic(folder / "pr.json", [{"recall": p["recall"], "precision": p["precision"]} for p in pts])
    write_json_atomic(folder / "calibration.json", [{"mean_score": p["bin_mean_score"], "positive_rate": p["bin_positive_rate"]}
                                                     for p in sorted(pts, key=lambda p: p["threshold"])])
    write_json_atomic(folder / "slices.json", [{"slice": f"{s['attribute']}={s['value']}", "auc": s["auc"]} for s in doc["slices"]])


def _booster_importance(model: bytes) -> dict[str, float]:
    import xgboost as xgb
    b = xgb.Booster()
    b.load_model(bytearray(model))
    return b.get_score(importance_type="total_gain")


def main(argv: list[str] | None = None) -> None:
    run_step("evaluate", run, argv, __doc__)


if __name__ == "__main__":
    main()
