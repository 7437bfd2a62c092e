"""Binary-classification metrics computed in Spark (nothing the size of the holdout reaches the driver):
exact ROC-AUC and average precision from per-score counts, log loss, Brier score, threshold counts, curve
points on a fixed score grid, all optionally per group (slice) and weighted by a ``weight`` column (young
negatives under the ``weight`` label policy count for less)."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

EPS = 1e-15


def _w(weight: str | None) -> F.Column:
    return F.col(weight) if weight else F.lit(1.0)


def ranking_metrics(scored: DataFrame, label: str, groups: list[str] | None = None, score: str = "score",
                    weight: str | None = None) -> DataFrame:
    """ROC-AUC (Mann-Whitney with ties counted half) and average precision per group, exact (weighted)."""
    g = list(groups or [])
    w = _w(weight)
    counts = (scored.groupBy(*g, score)
              .agg(F.sum(w * F.col(label)).alias("pos"), F.sum(w * (1 - F.col(label))).alias("neg")))
    asc = Window.partitionBy(*g).orderBy(score).rowsBetween(Window.unboundedPreceding, -1)
    desc = Window.partitionBy(*g).orderBy(F.col(score).desc()).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    per = (counts.withColumn("neg_below", F.coalesce(F.sum("neg").over(asc), F.lit(0)))
           .withColumn("cum_pos", F.sum("pos").over(desc))
           .withColumn("cum_all", F.sum(F.col("pos") + F.col("neg")).over(desc)))
    agg = per.groupBy(*g).agg(
        F.sum(F.col("pos") * (F.col("neg_below") + 0.5 * F.col("neg"))).alias("_auc_num"),
        F.sum("pos").alias("n_pos"), F.sum("neg").alias("n_neg"),  # weighted counts
        F.sum(F.col("pos") * F.col("cum_pos") / F.col("cum_all")).alias("_ap_num"))
    return (agg.withColumn("auc", F.when((F.col("n_pos") > 0) & (F.col("n_neg") > 0),
                                         F.col("_auc_num") / (F.col("n_pos") * F.col("n_neg"))))
            .withColumn("pr_auc", F.when(F.col("n_pos") > 0, F.col("_ap_num") / F.col("n_pos")))
            .drop("_auc_num", "_ap_num"))


def pointwise_metrics(scored: DataFrame, label: str, threshold: float, groups: list[str] | None = None,
                      score: str = "score", weight: str | None = None) -> DataFrame:
    """Log loss, Brier score, mean score, prevalence and the (weighted) confusion counts at ``threshold``."""
    g = list(groups or [])
    w = _w(weight)
    wavg = lambda c: F.sum(w * c) / F.sum(w)  # noqa: E731
    p = F.least(F.greatest(F.col(score), F.lit(EPS)), F.lit(1 - EPS))
    y = F.col(label)
    pred = (F.col(score) >= F.lit(threshold)).cast("int")
    return (scored.groupBy(*g).agg(
        F.count(F.lit(1)).alias("n"),
        wavg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("logloss"),
        wavg((F.col(score) - y) ** 2).alias("brier"),
        wavg(F.col(score)).alias("mean_score"),
        wavg(y).alias("prevalence"),
        F.sum(w * pred * y).alias("tp"), F.sum(w * pred * (1 - y)).alias("fp"),
        F.sum(w * (1 - pred) * y).alias("fn"), F.sum(w * (1 - pred) * (1 - y)).alias("tn")))


def binary_metrics(scored: DataFrame, label: str, threshold: float, groups: list[str] | None = None,
                   weight: str | None = None) -> list[dict]:
    """Everything per group as plain dicts (one row per group: small)."""
    g = list(groups or [])
    rank = ranking_metrics(scored, label, g, weight=weight)
    point = pointwise_metrics(scored, label, threshold, g, weight=weight)
    joined = point.join(rank, on=g, how="left") if g else point.crossJoin(rank)
    out = []
    for r in joined.collect():
        d = r.asDict()
        tp, fp, fn, tn = (d[k] or 0 for k in ("tp", "fp", "fn", "tn"))
        d["precision"] = tp / (tp + fp) if tp + fp else None
        d["recall"] = tp / (tp + fn) if tp + fn else None
        d["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        d["fpr"] = fp / (fp + tn) if fp + tn else None
        d["predicted_positive_rate"] = (tp + fp) / (tp + fp + fn + tn) if tp + fp + fn + tn else None
        out.append(d)
    return out


def curve_points(scored: DataFrame, label: str, bins: int = 200, score: str = "score", weight: str | None = None) -> list[dict]:
    """ROC and PR curve points and a reliability curve on a fixed grid of score thresholds (small)."""
    b = F.least(F.floor(F.col(score) * bins), F.lit(bins - 1)).cast("int")
    w = _w(weight)
    rows = (scored.groupBy(b.alias("bin"))
            .agg(F.sum(w * F.col(label)).alias("pos"), F.sum(w * (1 - F.col(label))).alias("neg"),
                 (F.sum(w * F.col(score)) / F.sum(w)).alias("mean_score"))
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
