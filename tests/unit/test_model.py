"""The model module and the decisions around it, on tiny inputs: verified loads (missing, altered), Spark
scoring equal to XGBoost's own, the segment-prior baseline, the paired bootstrap, publish's shadow and
direct modes, and promote's decision rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jobs import model, promote, publish
from jobs.common.files import sha256_file, write_json_atomic
from jobs.metrics import paired_replicates
from jobs.registry import LocalRegistry


def _booster(n: int = 400, seed: int = 0):
    import xgboost as xgb
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 3, n).astype(float)])
    x[::9, 0] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + (x[:, 1] == 2) + rng.normal(size=n)) > 0.8).astype(int)
    dm = xgb.DMatrix(x, label=y, feature_names=["a", "c"], feature_types=["q", "c"], enable_categorical=True)
    return xgb.train({"max_depth": 3, "objective": "binary:logistic", "seed": seed}, dm, 20), x


def _run_folder(tmp_path, booster):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    booster.save_model(str(run / "model" / model.MODEL_FILE))
    write_json_atomic(run / "model" / "train.json", {"artifact": model.MODEL_FILE, "sha256": sha256_file(run / "model" / model.MODEL_FILE),
                                                     "feature_names": ["a", "c"], "feature_types": ["q", "c"]})
    return run


def test_a_verified_model_scores_on_spark_exactly_as_xgboost_and_an_altered_one_is_refused(spark, tmp_path):
    import xgboost as xgb
    booster, x = _booster()
    run = _run_folder(tmp_path, booster)
    m = model.from_run(run)
    assert (m.kind, m.required_columns()) == ("xgboost", ["a", "c"])
    df = spark.createDataFrame([(i, None if np.isnan(a) else float(a), int(c)) for i, (a, c) in enumerate(x)], "id int, a double, c int")
    got = {r["id"]: r["score"] for r in model.predict(df, m).collect()}
    want = booster.predict(xgb.DMatrix(x, feature_names=["a", "c"], feature_types=["q", "c"], enable_categorical=True))
    assert len(got) == len(x) and max(abs(got[i] - want[i]) for i in got) < 1e-6

    art = run / "model" / model.MODEL_FILE
    art.write_bytes(art.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(model.ArtifactError, match="has sha256 .*, its manifest recorded") as e:
        model.from_run(run)
    assert e.value.reason == "checksum_mismatch"
    art.unlink()
    with pytest.raises(model.ArtifactError, match="is missing") as e:
        model.from_run(run)
    assert e.value.reason == "artifact_missing"


def test_the_segment_prior_is_the_smoothed_label_rate_per_segment_and_the_overall_rate_elsewhere(spark):
    rows = [("chip", 1)] * 3 + [("chip", 0)] * 7 + [("online", 1)] * 1 + [("online", 0)] * 29 + [(None, 0)] * 10
    df = spark.createDataFrame(rows, "attr_channel string, y int")
    prior = model.fit_prior(df, "y", "attr_channel", smoothing=10)
    overall = 4 / 50
    assert prior["overall"] == pytest.approx(overall)
    assert prior["rates"] == pytest.approx({"chip": (3 + 10 * overall) / 20, "online": (1 + 10 * overall) / 40})
    m = model.Model("segment_prior", json.dumps(prior).encode(), "x", [], [])
    assert m.required_columns() == []  # it can serve a day whose features cannot be trusted
    scored = model.predict(spark.createDataFrame([("chip",), ("swipe",), (None,)], "attr_channel string"), m).collect()
    assert [r["score"] for r in scored] == pytest.approx([prior["rates"]["chip"], overall, overall])
    bare = model.predict(spark.createDataFrame([(1,)], "id int"), m).first()  # the segment column is gone: one rate
    assert bare["score"] == pytest.approx(overall)


def test_paired_replicates_measure_both_models_on_one_resample(spark):
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.2).astype(int)
    a = np.clip(0.2 + 0.3 * y + rng.normal(scale=0.2, size=3000), 0.001, 0.999)
    rows = [(int(t), float(s), float(s)) for t, s in zip(y, a)]
    df = spark.createDataFrame(rows, "y int, s1 double, s2 double")
    reps = paired_replicates(df, "y", ("s1", "s2"), replicates=200, seed=1)
    assert np.array_equal(reps["auc"][0], reps["auc"][1])  # the same scores: a difference of exactly 0, always
    assert abs(np.median(reps["auc"][0]) - roc_auc_score(y, a)) < 0.01  # binned on the log-odds scale: close
    assert np.all(np.isfinite(reps["pr_auc"][0])) and 0 < np.median(reps["pr_auc"][0]) < 1


def _published(reg, tmp_path, version: str, ds: str):
    art = tmp_path / f"{version}.ubj"
    art.write_bytes(version.encode())
    reg.publish("m", version, {"model.ubj": art}, {"version": version, "ds": ds, "artifact": "model.ubj",
                                                   "sha256": sha256_file(art)})


def test_shadow_publishing_makes_a_challenger_direct_a_champion_and_never_moves_back(tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    for v, ds in (("v1", "2026-10-01"), ("v2", "2026-10-02"), ("v0", "2026-09-30"), ("v3", "2026-10-03")):
        _published(reg, tmp_path, v, ds)
    first = publish.publish_alias(reg, "m", "shadow", "v1", "2026-10-01", None, "r1")
    assert (first["alias"], first["moved"]) == ("champion", True) and "no champion to shadow" in first["why"]
    second = publish.publish_alias(reg, "m", "shadow", "v2", "2026-10-02", "v1", "r2")
    assert (second["alias"], second["moved"]) == ("challenger", True)
    assert reg.alias("m", "champion")["version"] == "v1" and reg.alias("m", "challenger")["version"] == "v2"
    older = publish.publish_alias(reg, "m", "shadow", "v0", "2026-09-30", "v1", "r0")  # a backfill
    assert not older["moved"] and "newer ds" in older["why"] and reg.alias("m", "challenger")["version"] == "v2"
    direct = publish.publish_alias(reg, "m", "direct", "v3", "2026-10-03", "v1", "r3")
    assert (direct["alias"], direct["version"]) == ("champion", "v3")
    with pytest.raises(Exception, match="publish.mode"):
        publish.publish_alias(reg, "m", "nightly", "v3", "2026-10-03", "v1", "r3")
    reg.clear_alias("m", "challenger", reason="retired: worse", expect="v2")
    assert reg.alias("m", "challenger") is None
    assert [(e["alias"], e["event"], e["version"]) for e in reg.history("m", "challenger")] == [
        ("challenger", "publish", "v2"), ("challenger", "retire", None)]


def _result(diff: float, ci: tuple[float, float], failed: tuple[str, ...] = ()) -> dict:
    return {"metrics": {"champion": {"auc": 0.8, "n": 1000}, "challenger": {"auc": 0.8 + diff, "n": 1000}},
            "difference": {"auc": diff, "auc_ci": list(ci), "pr_auc_ci": [-0.01, 0.05]},
            "fairness_checks": [{"name": f, "passed": False, "severity": "blocking"} for f in failed]
            + [{"name": "demographic_parity_difference[gender]", "passed": False, "severity": "warning"}]}


@pytest.mark.parametrize("days, result, decision, said", [
    (1, None, "wait", "matured for 1 shadow day(s), 3 needed"),
    (3, _result(0.03, (0.01, 0.05)), "promote", "better: AUC challenger 0.8300"),
    (3, _result(-0.03, (-0.05, -0.01)), "retire", "worse:"),
    (3, _result(0.01, (-0.01, 0.03)), "wait", "not decided yet"),
    (14, _result(0.01, (-0.01, 0.03)), "retire", "no clear gain after 14 matured shadow days"),
    (3, _result(0.05, (0.03, 0.07), ("equal_opportunity_difference[age_band]",)), "retire",
     "fails the fairness check(s) equal_opportunity_difference[age_band]"),
])
def test_promote_decides_from_matured_days_the_auc_interval_and_blocking_fairness_checks(days, result, decision, said):
    got, why = promote.decide(days, result, {"min_days": 3, "max_days": 14, "min_auc_gain": 0.0})
    assert got == decision and said in why, why


def _rmse_result(diff: float, ci: tuple[float, float], mae_ci: tuple[float, float] = (-1.0, 0.5)) -> dict:
    return {"metrics": {"champion": {"rmse": 10.0, "n": 1000}, "challenger": {"rmse": 10.0 + diff, "n": 1000}},
            "difference": {"rmse": diff, "rmse_ci": list(ci), "mae": 0.0, "mae_ci": list(mae_ci)}, "fairness_checks": []}


@pytest.mark.parametrize("days, result, decision, said", [
    (3, _rmse_result(-0.8, (-1.2, -0.6)), "promote", "better: RMSE challenger 9.2000 vs champion 10.0000"),
    (3, _rmse_result(-0.8, (-1.2, -0.3)), "wait", "not decided yet"),  # not below -5% of the champion's 10.0
    (3, _rmse_result(-0.8, (-1.2, -0.6), mae_ci=(0.1, 0.4)), "wait", "not decided yet"),  # MAE clearly worse
    (3, _rmse_result(0.5, (0.2, 0.9)), "retire", "worse: RMSE"),
    (14, _rmse_result(-0.1, (-0.4, 0.2)), "retire", "no clear gain after 14"),
])
def test_promote_decides_a_regression_on_the_rmse_difference_lower_is_better(days, result, decision, said):
    got, why = promote.decide(days, result, {"min_days": 3, "max_days": 14, "min_rmse_gain": 0.05})
    assert got == decision and said in why, why


def test_paired_regression_replicates_measure_both_predictions_on_one_resample(spark):
    import numpy as np

    from jobs.metrics import interval, paired_regression_replicates, regression_metrics
    rng = np.random.default_rng(4)
    y = rng.normal(0, 10, 3000)
    hard = rng.normal(0, 6, 3000)  # both models miss the same hard rows (the usual case), b a little less
    a, b = y + hard + rng.normal(0, 3, 3000), y + hard + rng.normal(0, 2, 3000)
    df = spark.createDataFrame([(float(*v[:1]), float(v[1]), float(v[2])) for v in zip(y, a, b)], "y double, a double, b double")
    reps = paired_regression_replicates(df, "y", ("a", "b"), replicates=200, seed=3)
    exact = {c: regression_metrics(df.withColumnRenamed(c, "score"), "y")[0] for c in ("a", "b")}
    diff = exact["b"]["rmse"] - exact["a"]["rmse"]
    lo, hi = interval(reps["rmse"][1] - reps["rmse"][0])
    assert lo < diff < hi < 0  # clearly better
    # one resample measures both: narrower than the difference of two independent intervals would be
    wa, wb = (np.diff(interval(reps["rmse"][i]))[0] for i in (0, 1))
    assert hi - lo < np.hypot(wa, wb)


def test_a_multiclass_shadow_is_decided_on_the_paired_log_loss_difference(spark):
    import numpy as np

    from jobs.metrics import interval, multiclass_metrics, paired_logloss_replicates
    rng = np.random.default_rng(6)
    y = rng.choice(3, 2000, p=[0.6, 0.3, 0.1])
    hard = rng.normal(0, 1, (2000, 3))  # both models share most of their errors
    softmax = lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)  # noqa: E731
    a = softmax(hard + 1.0 * np.eye(3)[y] + rng.normal(0, 0.5, (2000, 3)))
    b = softmax(hard + 1.6 * np.eye(3)[y] + rng.normal(0, 0.5, (2000, 3)))  # b: sharper on the true class
    df = spark.createDataFrame([(float(t), p.tolist(), q.tolist()) for t, p, q in zip(y, a, b)],
                               "y double, champion_probabilities array<double>, challenger_probabilities array<double>")
    reps = paired_logloss_replicates(df, "y", ("champion_probabilities", "challenger_probabilities"), replicates=200, seed=2)
    exact = [multiclass_metrics(df, "y", ["a", "b", "c"], probs=c)[0]["logloss"]
             for c in ("champion_probabilities", "challenger_probabilities")]
    lo, hi = interval(reps["logloss"][1] - reps["logloss"][0])
    assert lo < exact[1] - exact[0] < hi < 0
    result = {"metrics": {"champion": {"logloss": exact[0], "n": 2000}, "challenger": {"logloss": exact[1], "n": 2000}},
              "difference": {"logloss": exact[1] - exact[0], "logloss_ci": [lo, hi]}, "fairness_checks": []}
    decision, why = promote.decide(3, result, {"min_days": 3, "min_logloss_gain": 0.01})
    assert decision == "promote" and why.startswith("better: log loss challenger"), why


def test_a_model_whose_scores_are_out_of_range_or_whose_feature_is_all_null_hands_the_day_on(spark):
    from jobs import score
    prior = lambda rates, overall: model.Model("segment_prior", json.dumps(  # noqa: E731
        {"kind": "segment_prior", "column": "attr_channel", "rates": rates, "overall": overall}).encode(), "x", [], [], "v")
    feats = spark.createDataFrame([("t1", "chip"), ("t2", "online"), ("t3", None)], "txn_id string, attr_channel string").cache()
    links = [("champion", lambda: prior({"chip": 1.5}, 0.1)), ("baseline", lambda: prior({"chip": 0.3}, 0.1))]
    served, event = score.serve(feats, ["txn_id"], links, validated=True, threshold=0.5)
    rows = {r["txn_id"]: (r["score"], r["served_by"], r["reason"]) for r in served.collect()}
    assert rows == {"t1": (0.3, "fallback:baseline", "champion: scores_invalid"), "t2": (0.1, "fallback:baseline", "champion: scores_invalid"),
                    "t3": (0.1, "fallback:baseline", "champion: scores_invalid")}
    assert [a["reason"] for a in event["attempts"]] == ["scores_invalid", None]
    xgb_model = model.Model("xgboost", b"", "x", ["a", "c"], ["q", "c"])
    assert score.input_reason(xgb_model, {"a": 3, "c": 0}, validated=True) == "feature_all_null:c"
    assert score.input_reason(xgb_model, {"a": 3}, validated=True) == "feature_missing:c"
    assert score.input_reason(xgb_model, {"a": 3, "c": 3}, validated=False) == "validation_failed"
    assert score.input_reason(prior({}, 0.1), {}, validated=False) is None  # the baseline reads no feature


def test_a_learned_vocabulary_comes_from_the_rows_given_and_codes_the_same_in_spark_pyarrow_and_scoring(spark, tmp_path):
    """``c`` is learned ({top: 2, min_count: 2}): its vocabulary is the two most frequent values seen at least
    twice, most frequent first; any other value and null take the last code, in Spark (``encode``), in the
    local engine's pyarrow read (``encode_arrow``) and when a model carrying it scores raw values."""
    import pyarrow.dataset as ds
    import xgboost as xgb

    from jobs.common.config import DatasetSpec
    spec = DatasetSpec.from_dict({
        "name": "v", "examples": "e", "label": {"name": "y", "expr": "k is not null"},
        "sources": {"e": {"path": "p", "key": "k", "event_time": "t", "columns": [
            {"name": "k", "type": "string"}, {"name": "t", "type": "timestamp"}, {"name": "c", "type": "string"}]}},
        "features": {"categorical": {"c": {"top": 2, "min_count": 2}}}})
    assert list(spec.features.learned) == ["c"]
    values = ["JFK"] * 5 + ["SFO"] * 3 + ["ORD"] * 3 + ["BOS"] + [None]
    train_rows = spark.createDataFrame([(v,) for v in values], "c string")
    vocab = model.learn_vocabularies(train_rows, spec)
    assert vocab == {"c": ["JFK", "ORD"]}  # SFO and ORD tie on 3: by value; BOS seen once
    probe = ["JFK", "ORD", "SFO", "BOS", None, "LAX"]
    want = [0, 1, 2, 2, 2, 2]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(probe)], "i int, c string")
    assert [r["c"] for r in model.encode(df, vocab).orderBy("i").collect()] == want
    path = tmp_path / "rows.parquet"
    df.write.parquet(str(path))
    import pyarrow.compute as pc
    got = ds.dataset(str(path)).to_table(columns={"i": pc.field("i"), **model.encode_arrow(vocab, {"c": pc.field("c")})})
    assert dict(zip(got.column("i").to_pylist(), got.column("c").to_pylist())) == dict(enumerate(want))

    booster, x = _booster()  # a and c (its codes 0..2); served raw strings through the vocabulary
    run = _run_folder(tmp_path, booster)
    m = model.from_run(run)
    m = type(m)(**{**m.__dict__, "vocabularies": {"c": ["JFK", "ORD"]}})
    raw = spark.createDataFrame([(i, None if np.isnan(a) else float(a), ["JFK", "ORD", "SFO"][int(c)])
                                 for i, (a, c) in enumerate(x)], "id int, a double, c string")
    scored = model.predict(raw, m)
    assert scored.columns == ["id", "a", "c", "score"] and scored.schema["c"].dataType.simpleString() == "string"
    got = {r["id"]: r["score"] for r in scored.collect()}
    want = booster.predict(xgb.DMatrix(x, feature_names=["a", "c"], feature_types=["q", "c"], enable_categorical=True))
    assert max(abs(got[i] - want[i]) for i in got) < 1e-6


@pytest.mark.parametrize("rule, message", [
    ({"top": 50, "from": "holdout"}, r"features.categorical.dest: from 'holdout': a vocabulary is learned from the train window only"),
    ({"top": 50, "min_cnt": 3}, r"unknown key\(s\) \['min_cnt'\] \(allowed: top, min_count, from\)"),
    ({"top": 0}, "top and min_count must be at least 1"),
])
def test_a_vocabulary_rule_that_is_not_allowed_names_the_file_and_key(rule, message):
    from jobs.common.config import DatasetSpec
    from jobs.common.errors import ConfigError
    with pytest.raises(ConfigError, match=message):
        DatasetSpec.from_dict({
            "name": "v", "examples": "e", "label": {"name": "y", "expr": "k is not null"},
            "sources": {"e": {"path": "p", "key": "k", "event_time": "t", "columns": [
                {"name": "k", "type": "string"}, {"name": "t", "type": "timestamp"}, {"name": "dest", "type": "string"}]}},
            "features": {"categorical": {"dest": rule}}}, "conf/datasets/flights.yaml")
