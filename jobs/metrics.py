"""Binary-classification metrics computed in Spark (nothing the size of the holdout reaches the driver):
exact ROC-AUC and average precision from per-score counts, log loss, Brier score, threshold counts, curve
points on a fixed score grid, all optionally per group (slice)."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

EPS = 1e-15


def ranking_metrics(scored: DataFrame, label: str, groups: list[str] | None = None, score: str = "score") -> DataFrame:
    """ROC-AUC (Mann-Whitney with ties counted half) and average precision per group, exact."""
    g = list(groups or [])
    counts = (scored.groupBy(*g, score)
              .agg(F.sum(F.col(label)).cast("long").alias("pos"), F.sum(1 - F.col(label)).cast("long").alias("neg")))
    asc = Window.partitionBy(*g).orderBy(score).rowsBetween(Window.unboundedPreceding, -1)
    desc = Window.partitionBy(*g).orderBy(F.col(score).desc()).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    per = (counts.withColumn("neg_below", F.coalesce(F.sum("neg").over(asc), F.lit(0)))
           .withColumn("cum_pos", F.sum("pos").over(desc))
           .withColumn("cum_all", F.sum(F.col("pos") + F.col("neg")).over(desc)))
    agg = per.groupBy(*g).agg(
        F.sum(F.col("pos") * (F.col("neg_below") + 0.5 * F.col("neg"))).alias("_auc_num"),
        F.sum("pos").alias("n_pos"), F.sum("neg").alias("n_neg"),
        F.sum(F.col("pos") * F.col("cum_pos") / F.col("cum_all")).alias("_ap_num"))
    return (agg.withColumn("auc", F.when((F.col("n_pos") > 0) & (F.col("n_neg") > 0),
                                         F.col("_auc_num") / (F.col("n_pos") * F.col("n_neg"))))
            .withColumn("pr_auc", F.when(F.col("n_pos") > 0, F.col("_ap_num") / F.col("n_pos")))
            .drop("_auc_num", "_ap_num"))


def pointwise_metrics(scored: DataFrame, label: str, threshold: float, groups: list[str] | None = None,
                      score: str = "score") -> DataFrame:
    """Log loss, Brier score, mean score, prevalence and the confusion counts at ``threshold`` per group."""
    g = list(groups or [])
    p = F.least(F.greatest(F.col(score), F.lit(EPS)), F.lit(1 - EPS))
    y = F.col(label)
    pred = (F.col(score) >= F.lit(threshold)).cast("int")
    return (scored.groupBy(*g).agg(
        F.count(F.lit(1)).alias("n"),
        F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("logloss"),
        F.avg((F.col(score) - y) ** 2).alias("brier"),
        F.avg(F.col(score)).alias("mean_score"),
        F.avg(y).alias("prevalence"),
        F.sum(pred * y).cast("long").alias("tp"), F.sum(pred * (1 - y)).cast("long").alias("fp"),
        F.sum((1 - pred) * y).cast("long").alias("fn"), F.sum((1 - pred) * (1 - y)).cast("long").alias("tn")))


def binary_metrics(scored: DataFrame, label: str, threshold: float, groups: list[str] | None = None) -> list[dict]:
    """Everything per group as plain dicts (one row per group: small)."""
    g = list(groups or [])
    rank = ranking_metrics(scored, label, g)
    point = pointwise_metrics(scored, label, threshold, g)
    joined = point.join(rank, on=g, how="left") if g else point.crossJoin(rank)
    out = []
    for r in joined.collect():
        d = r.asDict()
        tp, fp, fn, tn = (d[k] or 0 for k in ("tp", "fp", "fn", "tn"))
        d["precision"] = tp / (tp + fp) if tp + fp else None
        d["recall"] = tp / (tp + fn) if tp + fn else None
        d["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        d["fpr"] = fp / (fp + tn) if fp + tn else None
        d["predicted_positive_rate"] = (tp + fp) / d["n"] if d["n"] else None
        out.append(d)
    return out


def curve_points(scored: DataFrame, label: str, bins: int = 200, score: str = "score") -> list[dict]:
    """ROC and PR curve points and a reliability curve on a fixed grid of score thresholds (small)."""
    b = F.least(F.floor(F.col(score) * bins), F.lit(bins - 1)).cast("int")
    rows = (scored.groupBy(b.alias("bin"))
            .agg(F.sum(F.col(label)).alias("pos"), F.sum(1 - F.col(label)).alias("neg"), F.avg(score).alias("mean_score"))
            .orderBy(F.col("bin").desc()).collect())
    P = sum(r["pos"] for r in rows) or 1
    N = sum(r["neg"] for r in rows) or 1
    tp = fp = 0
    pts = []
    for r in rows:
        tp += r["pos"]
        fp += r["neg"]
        pts.append({"threshold": r["bin"] / bins, "tpr": tp / P, "fpr": fp / N, "precision": tp / (tp + fp) if tp + fp else 1.0,
                    "recall": tp / P, "bin_mean_score": r["mean_score"], "bin_positive_rate": r["pos"] / (r["pos"] + r["neg"]),
                    "bin_n": r["pos"] + r["neg"]})
    return pts
