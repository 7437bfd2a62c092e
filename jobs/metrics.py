"""Binary-classification metrics computed in Spark (nothing the size of the holdout reaches the driver):
exact ROC-AUC, average precision and recall at a fixed false-positive rate from per-score counts, log loss,
Brier score, expected calibration error, threshold counts, curve points on a fixed score grid, all optionally
per group (slice) and weighted by a ``weight`` column (young negatives under the ``weight`` label policy count
for less); bootstrap confidence intervals per group from binned counts."""
from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

EPS = 1e-15


def _w(weight: str | None) -> F.Column:
    return F.col(weight) if weight else F.lit(1.0)


def score_counts(scored: DataFrame, label: str, groups: list[str] | None = None, score: str = "score",
                 weight: str | None = None) -> DataFrame:
    """Per group and distinct score: the (weighted) positives ``pos``, negatives ``neg`` and rows ``k`` (the
    label is 0 or 1). A row's rank, predicted class, loss and calibration bin depend on its score and label
    alone, so every binary metric is a sum over these counts: the rows are aggregated once, whatever the
    number of metrics."""
    w = _w(weight)
    y = F.col(label)
    return (scored.groupBy(*(groups or []), score)
            .agg(F.sum(w * y).alias("pos"), F.sum(w * (1 - y)).alias("neg"), F.count(F.lit(1)).alias("k")))


def ranking_and_pointwise(counts: DataFrame, groups: list[str], threshold: float, score: str = "score",
                          fpr_target: float = 0.01) -> DataFrame:
    """From ``score_counts``, per group: ROC-AUC (Mann-Whitney with ties counted half), average precision,
    the recall at a false-positive rate of at most ``fpr_target`` (the best threshold among the distinct
    scores), exact (weighted); log loss, Brier score, mean score, prevalence and the (weighted) confusion
    counts at ``threshold``. One window ordering (scores descending) gives every cumulative count: the
    negatives below a score are all negatives less those at or above it."""
    g = list(groups)
    order = Window.partitionBy(*g).orderBy(F.col(score).desc())
    upto = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    whole = order.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)  # same ordering: no second sort
    s, pos, neg = F.col(score), F.col("pos"), F.col("neg")
    per = (counts.withColumn("cum_pos", F.sum(pos).over(upto)).withColumn("cum_neg", F.sum(neg).over(upto))
           .withColumn("tot_neg", F.sum(neg).over(whole)))
    wt = pos + neg
    p = F.least(F.greatest(s, F.lit(EPS)), F.lit(1 - EPS))
    pred = (s >= F.lit(threshold)).cast("int")
    agg = per.groupBy(*g).agg(
        F.sum("k").alias("n"),
        (F.sum(-(pos * F.log(p) + neg * F.log(1 - p))) / F.sum(wt)).alias("logloss"),
        (F.sum(pos * (s - 1) ** 2 + neg * s ** 2) / F.sum(wt)).alias("brier"),
        (F.sum(wt * s) / F.sum(wt)).alias("mean_score"),
        (F.sum(pos) / F.sum(wt)).alias("prevalence"),
        F.sum(pred * pos).alias("tp"), F.sum(pred * neg).alias("fp"),
        F.sum((1 - pred) * pos).alias("fn"), F.sum((1 - pred) * neg).alias("tn"),
        F.sum(pos * (F.col("tot_neg") - F.col("cum_neg") + 0.5 * neg)).alias("_auc_num"),
        F.sum(pos).alias("n_pos"), F.sum(neg).alias("n_neg"),  # weighted counts
        F.sum(pos * F.col("cum_pos") / (F.col("cum_pos") + F.col("cum_neg"))).alias("_ap_num"),
        F.max(F.when(F.col("cum_neg") <= F.lit(fpr_target) * F.col("tot_neg"), F.col("cum_pos"))).alias("_tp_at_fpr"))
    return (agg.withColumn("auc", F.when((F.col("n_pos") > 0) & (F.col("n_neg") > 0),
                                         F.col("_auc_num") / (F.col("n_pos") * F.col("n_neg"))))
            .withColumn("pr_auc", F.when(F.col("n_pos") > 0, F.col("_ap_num") / F.col("n_pos")))
            .withColumn("recall_at_fpr", F.when(F.col("n_pos") > 0, F.coalesce(F.col("_tp_at_fpr"), F.lit(0.0)) / F.col("n_pos")))
            .drop("_auc_num", "_ap_num", "_tp_at_fpr"))


def calibration_error(counts: DataFrame, groups: list[str], score: str = "score", bins: int = 10) -> DataFrame:
    """From ``score_counts``: the expected calibration error over ``bins`` equal-width score bins, the sum
    over bins of the bin's share of the (weighted) rows times |mean score - observed rate| = sum |S_b - Y_b| / W."""
    g = list(groups)
    s, wt = F.col(score), F.col("pos") + F.col("neg")
    b = F.least(F.floor(s * bins), F.lit(bins - 1)).cast("int")
    per_bin = counts.groupBy(*g, b.alias("_bin")).agg(F.sum(wt * s).alias("s"), F.sum("pos").alias("y"), F.sum(wt).alias("w"))
    return per_bin.groupBy(*g).agg((F.sum(F.abs(F.col("s") - F.col("y"))) / F.sum("w")).alias("ece"))


def binary_metrics(scored: DataFrame, label: str, threshold: float, groups: list[str] | None = None,
                   weight: str | None = None, fpr_target: float = 0.01) -> list[dict]:
    """Everything per group as plain dicts (one row per group: small), from one aggregation of the rows."""
    g = list(groups or [])
    counts = score_counts(scored, label, g, weight=weight)
    main = ranking_and_pointwise(counts, g, threshold, fpr_target=fpr_target)
    ece = calibration_error(counts, g)
    joined = main.join(ece, on=g, how="left") if g else main.crossJoin(ece)
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


def bootstrap_replicates(scored: DataFrame, label: str, threshold: float, groups: list[str], score: str = "score",
                         weight: str | None = None, replicates: int = 200, seed: int = 0,
                         bins_per_logit: int = 20) -> dict[tuple, dict[str, Any]]:
    """Bootstrap replicates of AUC, recall, false-positive rate, precision and predicted-positive rate per
    group. Spark reduces the rows to counts per (group, score bin, label, prediction), with score bins
    1/``bins_per_logit`` wide on the log-odds scale (fine at every score level); the driver then draws
    Poisson(1) row weights (a count of k identical cells is Poisson(k)) for each replicate: small, whatever
    the holdout size. Groups are disjoint row sets, so their replicates are independent and can be combined
    (e.g. the spread of a rate across the slices of one attribute)."""
    import numpy as np
    w = _w(weight)
    p = F.least(F.greatest(F.col(score), F.lit(1e-9)), F.lit(1 - 1e-9))
    sbin = F.floor(F.log(p / (1 - p)) * bins_per_logit).cast("int")
    rows = (scored.groupBy(*groups, sbin.alias("_bin"), F.col(label).alias("_y"),
                           (F.col(score) >= F.lit(threshold)).cast("int").alias("_pred"))
            .agg(F.count(F.lit(1)).alias("k"), F.sum(w).alias("w")).collect())
    by_group: dict[tuple, list] = {}
    for r in rows:
        by_group.setdefault(tuple(r[c] for c in groups), []).append((r["_bin"], r["_y"], r["_pred"], r["k"], r["w"]))
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(by_group, key=str):
        cells = np.array(sorted(by_group[key]), dtype="float64")
        b, y, pred, k, wsum = cells.T
        draws = rng.poisson(k, size=(replicates, len(k))) * (wsum / k)
        pos, neg = draws * y, draws * (1 - y)
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])  # cells are sorted by bin
        pos_b, neg_b = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
        P, N = pos_b.sum(1), neg_b.sum(1)
        neg_below = np.cumsum(neg_b, axis=1) - neg_b
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = {"auc": (pos_b * (neg_below + 0.5 * neg_b)).sum(1) / (P * N),
                        "recall": (pos * pred).sum(1) / P, "fpr": (neg * pred).sum(1) / N,
                        "precision": (pos * pred).sum(1) / (draws * pred).sum(1),
                        "predicted_positive_rate": (draws * pred).sum(1) / draws.sum(1)}
    return out


def interval(values, level: float = 0.95) -> list[float] | None:
    """Percentile interval of bootstrap replicates (None when fewer than half are defined)."""
    import numpy as np
    v = np.asarray(values, dtype="float64")
    if np.isfinite(v).sum() < max(len(v) // 2, 1):
        return None
    return [float(np.nanpercentile(v, 100 * (1 - level) / 2)), float(np.nanpercentile(v, 100 * (1 + level) / 2))]


def replicate_intervals(reps: dict[tuple, dict[str, Any]], level: float = 0.95) -> dict[tuple, dict[str, list[float]]]:
    """Percentile intervals per group and metric of ``bootstrap_replicates`` output (undefined ones left out)."""
    return {key: {m: ci for m, v in r.items() if (ci := interval(v, level))} for key, r in reps.items()}


def bootstrap_intervals(scored: DataFrame, label: str, threshold: float, groups: list[str], level: float = 0.95,
                        **kw) -> dict[tuple, dict[str, list[float]]]:
    """Percentile intervals of ``bootstrap_replicates`` per group and metric."""
    return replicate_intervals(bootstrap_replicates(scored, label, threshold, groups, **kw), level)


def paired_replicates(scored: DataFrame, label: str, scores: tuple[str, str], weight: str | None = None,
                      replicates: int = 200, seed: int = 0, bins_per_logit: int = 20) -> dict[str, Any]:
    """Paired bootstrap replicates of the AUC and the average precision of two scores of the same rows
    (``scores``: two columns): each replicate resamples rows once (Poisson(1) weights, drawn per cell of
    (bin of the first score, bin of the second, label) as in ``bootstrap_replicates``), and both models are
    measured on that one resample, so their difference's spread is that of the difference, not the sum of
    two spreads. Returns {"auc": (reps of a, reps of b), "pr_auc": (...)}, arrays of ``replicates``."""
    import numpy as np
    w = _w(weight)

    def sbin(c: str):
        p = F.least(F.greatest(F.col(c), F.lit(1e-9)), F.lit(1 - 1e-9))
        return F.floor(F.log(p / (1 - p)) * bins_per_logit).cast("int")
    rows = (scored.groupBy(sbin(scores[0]).alias("_a"), sbin(scores[1]).alias("_b"), F.col(label).alias("_y"))
            .agg(F.count(F.lit(1)).alias("k"), F.sum(w).alias("w")).collect())
    if not rows:
        nan = np.full(replicates, np.nan)
        return {"auc": (nan, nan), "pr_auc": (nan, nan)}
    cells = np.array([(r["_a"], r["_b"], r["_y"], r["k"], r["w"]) for r in rows], dtype="float64")
    a, b, y, k, wsum = cells.T
    draws = np.random.default_rng(seed).poisson(k, size=(replicates, len(k))) * (wsum / k)
    out: dict[str, Any] = {"auc": [], "pr_auc": []}
    for bins in (a, b):
        order = np.argsort(bins, kind="stable")
        sb, d, yy = bins[order], draws[:, order], y[order]
        starts = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1]])
        pos_b, neg_b = np.add.reduceat(d * yy, starts, axis=1), np.add.reduceat(d * (1 - yy), starts, axis=1)
        P, N = pos_b.sum(1), neg_b.sum(1)
        neg_below = np.cumsum(neg_b, axis=1) - neg_b
        cum_pos = np.cumsum(pos_b[:, ::-1], axis=1)[:, ::-1]  # at or above each bin: the bins from the top
        cum_neg = np.cumsum(neg_b[:, ::-1], axis=1)[:, ::-1]
        seen = cum_pos + cum_neg
        precision = np.divide(cum_pos, seen, out=np.zeros_like(seen), where=seen > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["auc"].append((pos_b * (neg_below + 0.5 * neg_b)).sum(1) / (P * N))
            out["pr_auc"].append((pos_b * precision).sum(1) / P)
    return {m: tuple(v) for m, v in out.items()}


# ---------------------------------------------------------------- regression
REGRESSION_SUMS = ("w", "se", "ae", "e", "y", "yy", "s")  # weighted sums: rows, squared error, absolute error,
#                                                          residual (score - label), label, label squared, score


def _regression_sums(score: str, label: str, w: F.Column) -> list[F.Column]:
    e, y = F.col(score) - F.col(label), F.col(label)
    return [F.sum(w).alias("w"), F.sum(w * e * e).alias("se"), F.sum(w * F.abs(e)).alias("ae"), F.sum(w * e).alias("e"),
            F.sum(w * y).alias("y"), F.sum(w * y * y).alias("yy"), F.sum(w * F.col(score)).alias("s")]


def regression_figures(w, se, ae, e, y, yy, s):
    """RMSE, MAE, R² (1 - SSE / SST around the mean label), mean residual (score - label: > 0 over-predicts),
    mean label and mean score from the weighted sums; numbers or numpy arrays (bootstrap replicates) alike."""
    import numpy as np
    with np.errstate(invalid="ignore", divide="ignore"):
        sst = np.asarray(yy - y * y / w, dtype="float64")
        r2 = np.where(sst > 0, 1 - se / np.where(sst > 0, sst, 1.0), np.nan)
        out = {"rmse": np.sqrt(se / w), "mae": ae / w, "r2": r2, "mean_residual": e / w, "mean_label": y / w,
               "mean_score": s / w}
    if np.ndim(w) == 0:
        return {k: (None if not np.isfinite(v) else float(v)) for k, v in out.items()}
    return out


def regression_metrics(scored: DataFrame, label: str, groups: list[str] | None = None, score: str = "score",
                       weight: str | None = None) -> list[dict]:
    """RMSE, MAE, R², mean residual, mean label and mean score per group (``regression_figures``), weighted,
    from one aggregation: one small dict per group."""
    g = list(groups or [])
    out = []
    for r in scored.groupBy(*g).agg(F.count(F.lit(1)).alias("n"), *_regression_sums(score, label, _w(weight))).collect():
        d = r.asDict()
        out.append({**{k: d[k] for k in g}, "n": d["n"], **regression_figures(*(d[k] for k in REGRESSION_SUMS))})
    return out


POISSON_1_CDF = (0.36787944117144233, 0.7357588823428847, 0.9196986029286058, 0.9810118431238462,
                 0.9963401531726563, 0.9994058151824183, 0.9999167588507119, 0.9999897508033253)


def _poisson_resamples(df: DataFrame, replicates: int, seed: int) -> DataFrame:
    """``df`` repeated ``replicates`` times (``_r``), each row with a Poisson(1) count ``_k`` drawn from a hash
    of its values, the replicate and the seed: the same rows and seed give the same resamples."""
    u = F.pmod(F.xxhash64(F.lit(seed), F.col("_r"), *[F.col(c) for c in df.columns]), F.lit(1 << 30)) / float(1 << 30)
    return (df.select("*", F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))).alias("_r"))
            .withColumn("_k", sum((u > F.lit(c)).cast("double") for c in POISSON_1_CDF)))


def _paired_sums(scored: DataFrame, replicates: int, seed: int, parts: dict[str, tuple[F.Column, F.Column]]):
    """Per replicate of one Poisson resample (``_poisson_resamples``): its weight, and per name of ``parts``
    the resampled sums of a per-row value of each of two predictions. Returns (weights, {name: (a, b)})."""
    import numpy as np
    names = [f"{n}{i}" for n in parts for i in (0, 1)]
    aggs = [F.sum(F.col("_k") * v).alias(f"{n}{i}") for n, pair in parts.items() for i, v in enumerate(pair)]
    rows = _poisson_resamples(scored, replicates, seed).groupBy("_r").agg(F.sum("_k").alias("w"), *aggs).collect()
    got = np.full((1 + len(names), replicates), np.nan)
    for r in rows:
        got[:, r["_r"]] = [r["w"], *[r[x] for x in names]]
    return got[0], {n: (got[1 + 2 * j], got[2 + 2 * j]) for j, n in enumerate(parts)}


def paired_regression_replicates(scored: DataFrame, label: str, scores: tuple[str, str], replicates: int = 200,
                                 seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap replicates of the RMSE and MAE of two predictions of the same rows (``scores``): each
    replicate's one resample measures both. Returns {"rmse": (reps of a, reps of b), "mae": (...)}, arrays of
    ``replicates``."""
    import numpy as np
    err = [F.col(c) - F.col(label) for c in scores]
    w, s = _paired_sums(scored, replicates, seed, {"se": tuple(e * e for e in err), "ae": tuple(F.abs(e) for e in err)})
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"rmse": tuple(np.sqrt(x / w) for x in s["se"]), "mae": tuple(x / w for x in s["ae"])}


def paired_logloss_replicates(scored: DataFrame, label: str, probs: tuple[str, str], replicates: int = 200,
                              seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap replicates of the log loss and accuracy of two multiclass predictions of the same
    rows (``probs``: two columns of class probabilities; ``label``: the class index), one resample measuring
    both. Returns {"logloss": (reps of a, reps of b), "accuracy": (...)}."""
    import numpy as np
    y = F.col(label).cast("int")
    loss = tuple(-F.log(_true_class_probability(c, y)) for c in probs)
    hit = tuple((_predicted_index(c) == y).cast("double") for c in probs)
    w, s = _paired_sums(scored, replicates, seed, {"ll": loss, "hit": hit})
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"logloss": tuple(x / w for x in s["ll"]), "accuracy": tuple(x / w for x in s["hit"])}


def _replicate_sums(scored: DataFrame, groups: list[str], sums: list[F.Column], replicates: int, seed: int):
    """The weighted ``sums`` (aggregates over ``_k``, the resample's row counts) per group and replicate of a
    Poisson bootstrap (``_poisson_resamples``): {group key: array (sums x replicates)}, keys in order. Spark
    aggregates the rows, expanded ``replicates`` times in that one aggregation; only groups x replicates sums
    reach the driver."""
    import numpy as np
    rows = _poisson_resamples(scored, replicates, seed).groupBy(*groups, "_r").agg(*sums).collect()
    by_group: dict[tuple, np.ndarray] = {}
    for r in rows:
        out = by_group.setdefault(tuple(r[c] for c in groups), np.zeros((len(sums), replicates)))
        out[:, r["_r"]] = [v or 0.0 for v in list(r)[len(groups) + 1:]]  # the sums, in their order
    return dict(sorted(by_group.items(), key=lambda kv: str(kv[0])))


def regression_replicates(scored: DataFrame, label: str, groups: list[str], score: str = "score",
                          weight: str | None = None, replicates: int = 200, seed: int = 0) -> dict[tuple, dict[str, Any]]:
    """Poisson bootstrap replicates of the ``regression_figures`` per group (``_poisson_resamples``): Spark
    sums the weighted rows per (group, replicate), so only groups x replicates sums reach the driver. The rows
    are expanded ``replicates`` times inside that one aggregation."""
    sums = _replicate_sums(scored, groups, _regression_sums(score, label, F.col("_k") * _w(weight)), replicates, seed)
    return {key: regression_figures(*s) for key, s in sums.items()}


# ---------------------------------------------------------------- multiclass
MULTICLASS_SUMS = ("w", "ll", "tp", "support", "predicted")  # per class for the last three


def _true_class_probability(probs: str, y: F.Column) -> F.Column:
    """The probability ``probs`` gives the true class index ``y``, clipped like log loss everywhere."""
    return F.least(F.greatest(F.element_at(F.col(probs), y + 1), F.lit(EPS)), F.lit(1 - EPS))


def _predicted_index(probs: str) -> F.Column:
    """The most probable class's index (ties to the lowest)."""
    return F.array_position(F.col(probs), F.array_max(F.col(probs))).cast("int") - 1


def _multiclass_sums(label: str, probs: str, k: int, w: F.Column) -> list[F.Column]:
    """Weighted sums of one group: rows, log loss of the true class's probability (clipped like log loss
    everywhere), and per class c: true positives, rows of class c, rows predicted c (the most probable class;
    ties to the lowest index)."""
    y = F.col(label).cast("int")
    pred = _predicted_index(probs)
    out = [F.sum(w).alias("w"), F.sum(-w * F.log(_true_class_probability(probs, y))).alias("ll")]
    out += [F.sum(w * ((pred == c) & (y == c)).cast("double")).alias(f"tp{c}") for c in range(k)]
    out += [F.sum(w * (y == c).cast("double")).alias(f"support{c}") for c in range(k)]
    out += [F.sum(w * (pred == c).cast("double")).alias(f"predicted{c}") for c in range(k)]
    return out  # in MULTICLASS_SUMS order, a class after another within tp, support, predicted


def multiclass_figures(w, ll, tp, support, predicted, classes: list[str]) -> dict[str, Any]:
    """Log loss, accuracy, macro-F1 (the mean F1 over the classes that occur as a label or a prediction,
    scikit-learn's default) and per-class recall and precision from the weighted sums (``tp``, ``support``,
    ``predicted``: one entry per class, numbers or arrays of replicates)."""
    import numpy as np
    tp, support, predicted = (np.asarray(x, dtype="float64") for x in (tp, support, predicted))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / np.where(support + predicted > 0, support + predicted, 1), 0.0)
        seen = (support + predicted) > 0
        macro_f1 = np.where(seen, f1, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)
        out = {"logloss": ll / w, "accuracy": tp.sum(axis=0) / w, "macro_f1": macro_f1}
    scalar = np.ndim(w) == 0
    num = (lambda v: None if not np.isfinite(v) else float(v)) if scalar else (lambda v: v)  # noqa: E731
    res = {k: num(v) for k, v in out.items()}
    for i, c in enumerate(classes):
        res[f"recall[{c}]"], res[f"precision[{c}]"] = num(recall[i]), num(precision[i])
    return res


def multiclass_metrics(scored: DataFrame, label: str, classes: list[str], groups: list[str] | None = None,
                       probs: str = "probabilities", weight: str | None = None) -> list[dict]:
    """Log loss, accuracy, macro-F1 and per-class recall and precision per group (``multiclass_figures``),
    weighted, from one aggregation. ``label``: the class index (0..K-1), ``probs``: the K class probabilities."""
    g, k = list(groups or []), len(classes)
    out = []
    for r in scored.groupBy(*g).agg(F.count(F.lit(1)).alias("n"), *_multiclass_sums(label, probs, k, _w(weight))).collect():
        d = r.asDict()
        per = {s: [d[f"{s}{c}"] for c in range(k)] for s in MULTICLASS_SUMS[2:]}
        out.append({**{x: d[x] for x in g}, "n": d["n"], **multiclass_figures(d["w"], d["ll"], **per, classes=classes)})
    return out


def multiclass_replicates(scored: DataFrame, label: str, classes: list[str], groups: list[str],
                          probs: str = "probabilities", weight: str | None = None, replicates: int = 200,
                          seed: int = 0) -> dict[tuple, dict[str, Any]]:
    """Poisson bootstrap replicates of the ``multiclass_figures`` per group (``_poisson_resamples``)."""
    k = len(classes)
    sums = _replicate_sums(scored, groups, _multiclass_sums(label, probs, k, F.col("_k") * _w(weight)), replicates, seed)
    out = {}
    for key, s in sums.items():
        per = {name: s[2 + i * k: 2 + (i + 1) * k] for i, name in enumerate(MULTICLASS_SUMS[2:])}
        out[key] = multiclass_figures(s[0], s[1], **per, classes=classes)
    return out


def headline(m: dict[str, Any]) -> str:
    """A model's key holdout figures in words, from its metrics (binary: AUC and PR-AUC; regression: RMSE,
    MAE and R²; multiclass: log loss and macro-F1), e.g. for a status line."""
    keys = [k for k in ("auc", "pr_auc", "rmse", "mae", "r2", "logloss", "macro_f1") if k in m]
    return ", ".join(f"{k} {'n/a' if m[k] is None else f'{m[k]:.4f}'}" for k in keys) or "no metrics"
