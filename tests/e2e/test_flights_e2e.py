"""A second dataset by spec alone, end to end through Airflow: the shipped ``flights`` spec (an expression
label, cancelled flights quarantined as null_label, hundreds of airports in learned vocabularies, hourly
weather joined as of departure, the aircraft's earlier arrival delays aggregated as of what had arrived)
on the generator's landing zone, one real ``dag.test()`` of train_pipeline__flights reused by every test,
and one of its regression variant (the delay in minutes) on the same files. The features are recomputed
here with pandas from the landing files, the metrics with scikit-learn, and each model is shown to find the
signal the generator planted in the as-of features."""
from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pendulum
import pytest
import yaml

from jobs import synth_flights
from jobs.common.config import DatasetSpec
from tests.conftest import REPO, write_conf

NAME = "flights"
START, DAYS = dt.date(2026, 9, 1), 26
DS = START + dt.timedelta(days=DAYS - 1)
AS_OF = ("origin_wind_kt", "origin_precip_mm", "origin_visibility_km", "dest_wind_kt", "dest_precip_mm",
         "dest_visibility_km", "tail_arrived_12h", "tail_arr_delay_max_12h", "tail_arr_delay_mean_12h")


REGRESSION = "flights_minutes"
MULTICLASS = "flights_status"
STATUS = ("ontime", "late", "cancelled")


def regression_variant(folder) -> None:
    """The same spec as a regression of the arrival delay in minutes, with its own bars in minutes: what a
    user changes to predict how late rather than whether (the landing files are shared)."""
    doc = yaml.safe_load((REPO / "conf" / "datasets" / f"{NAME}.yaml").read_text())
    doc.update(name=REGRESSION, task="regression", label={"name": "arr_delay_min", "expr": "arr_delay"})
    doc["params"]["evaluate"]["gate"] = {"max_top_feature_share": 0.9, "max_slice_mae_gap": 10.0,
                                         "max_slice_mean_residual_gap": 10.0}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{REGRESSION}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def multiclass_variant(folder) -> None:
    """The same spec with three classes: on time, late, or cancelled, which is now a class of its own rather
    than a missing label."""
    doc = yaml.safe_load((REPO / "conf" / "datasets" / f"{NAME}.yaml").read_text())
    doc.update(name=MULTICLASS, task="multiclass", label={
        "name": "status", "classes": list(STATUS),
        "expr": "CASE WHEN arr_delay IS NULL THEN 'cancelled' WHEN arr_delay > 15 THEN 'late' ELSE 'ontime' END"})
    doc["params"]["evaluate"]["gate"] = {"max_top_feature_share": 0.9}
    (folder / f"{MULTICLASS}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("flights")
    conf = write_conf(root)
    synth_flights.generate(synth_flights.FlightsConfig(start=START, days=DAYS, rows_per_day=600), root / "landing" / NAME)
    regression_variant(root / "datasets")
    multiclass_variant(root / "datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINYARD_CONF", str(conf))
        mp.setenv("TRAINYARD_DATASETS_DIR", str(root / "datasets"))
        for cmd in (["db", "migrate"], ["dags", "reserialize"]):
            subprocess.run([sys.executable, "-m", "airflow", *cmd], check=True, capture_output=True, cwd=REPO)
        from airflow.dag_processing.dagbag import DagBag
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        names = (NAME, REGRESSION, MULTICLASS)
        dag_ids = [f"train_pipeline__{n}" for n in names]
        with create_session() as session:  # runs an earlier session left in the tests' Airflow database
            session.query(DagRun).filter(DagRun.dag_id.in_(
                [*dag_ids, *[f"{k}_pipeline__{n}" for k in ("score", "monitor") for n in (REGRESSION, MULTICLASS)]])
            ).delete(synchronize_session=False)
        out = {}
        for name, dag_id in zip(names, dag_ids):
            mp.setenv("TRAINYARD_DATASET", name)
            dag = DagBag(str(REPO / "dags")).get_dag(dag_id)
            out[name] = dag.test(logical_date=pendulum.datetime(DS.year, DS.month, DS.day, tz="UTC"),
                                 run_conf={"start_ds": START.isoformat()})
        day = pendulum.datetime(DS.year, DS.month, DS.day, tz="UTC")
        for name in (REGRESSION, MULTICLASS):  # the day served by the model, then monitored
            mp.setenv("TRAINYARD_DATASET", name)
            for kind in ("score", "monitor"):
                out[(kind, name)] = DagBag(str(REPO / "dags")).get_dag(f"{kind}_pipeline__{name}").test(logical_date=day)
        yield root, out


@pytest.fixture(scope="module")
def run(runs):
    return runs[0], runs[1][NAME]


def _landing(root, source: str) -> pd.DataFrame:
    files = sorted(glob.glob(str(root / "landing" / NAME / source / "ds=*" / "*.csv")))
    return pd.concat([pd.read_csv(f).assign(ds=f.split("ds=")[1][:10]) for f in files], ignore_index=True)


def _features(root, spark) -> pd.DataFrame:
    return spark.read.format("delta").load(str(root / "lake" / NAME / "features")).toPandas()


def test_the_flights_dag_runs_by_spec_alone_and_is_blessed(run):
    root, dagrun = run
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    assert set(states.values()) == {"success"} and str(dagrun.state) == "success", states
    blessing = json.loads((root / "runs" / NAME / f"ds={DS}" / "evaluation" / "blessing.json").read_text())
    assert blessing["blessed"], blessing["reasons"]


def test_cancelled_flights_are_quarantined_as_null_label_and_counts_reconcile(run, spark):
    root = run[0]
    landed = _landing(root, "flights")
    cancelled = int(landed["arr_delay"].isna().sum())
    lake = root / "lake" / NAME
    quarantine = spark.read.format("delta").load(str(lake / "quarantine_flights"))
    reasons = {r["reason"]: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    assert reasons == {"null_label": cancelled} and cancelled > 0
    silver = spark.read.format("delta").load(str(lake / "silver_flights"))
    assert silver.count() + cancelled == len(landed) and silver.where("arr_delay IS NULL").count() == 0
    ledger = spark.read.format("delta").load(str(lake / "etl_ledger")).where("source = 'flights'").collect()
    assert len(ledger) == DAYS and all(r["balanced"] for r in ledger)


def test_hundreds_of_destinations_become_a_vocabulary_learned_from_the_train_window(run, spark):
    root = run[0]
    silver = spark.read.format("delta").load(str(root / "lake" / NAME / "silver_flights"))
    assert silver.select("dest").distinct().count() >= 200
    champion = json.loads((root / "registry" / NAME / "aliases" / "champion.json").read_text())["version"]
    manifest = json.loads((root / "registry" / NAME / "versions" / champion / "manifest.json").read_text())
    vocab = manifest["vocabularies"]["dest"]
    assert 12 < len(vocab) <= 40  # top 40, each seen at least 20 times in the train window
    train = (spark.read.format("delta").load(str(root / "lake" / NAME / "training_set"))
             .where(f"cutoff_ds = DATE'{DS}' AND split = 'train'").groupBy("dest").count().toPandas().set_index("dest")["count"])
    assert min(train[v] for v in vocab) >= max(20, train.drop(vocab).max())  # the most frequent, none rarer than 20


def test_weather_joined_as_of_departure_and_arrivals_aggregated_as_known_equal_a_pandas_recomputation(run, spark):
    """Every example's as-of features, recomputed from the landing files: the latest observation at the
    airport strictly before departure and at most 3 h old; the tail's legs of the 12 h before departure
    whose arrival (arr_ts) was strictly before it."""
    root = run[0]
    feats = _features(root, spark).sort_values("flight_id", ignore_index=True)
    flights = _landing(root, "flights").dropna(subset=["arr_delay"])  # silver: the cancelled ones quarantined
    flights["dep_ts"], flights["arr_ts"] = pd.to_datetime(flights["dep_ts"]), pd.to_datetime(flights["arr_ts"])
    weather = _landing(root, "weather")
    weather["obs_ts"] = pd.to_datetime(weather["obs_ts"])
    want = flights.sort_values("flight_id", ignore_index=True)
    assert list(want["flight_id"]) == list(feats["flight_id"])
    for side in ("origin", "dest"):
        w = weather.rename(columns={"airport": side, "wind_kt": f"{side}_wind_kt", "precip_mm": f"{side}_precip_mm",
                                    "visibility_km": f"{side}_visibility_km"}).sort_values("obs_ts")
        joined = pd.merge_asof(want.sort_values("dep_ts"), w[["obs_ts", side, f"{side}_wind_kt", f"{side}_precip_mm",
                                                              f"{side}_visibility_km"]],
                               left_on="dep_ts", right_on="obs_ts", by=side, allow_exact_matches=False,
                               tolerance=pd.Timedelta(hours=3)).sort_values("flight_id", ignore_index=True)
        for c in (f"{side}_wind_kt", f"{side}_precip_mm", f"{side}_visibility_km"):
            np.testing.assert_allclose(feats[c].to_numpy(float), joined[c].to_numpy(float), rtol=0, atol=1e-9, err_msg=c)
    assert feats["origin_wind_kt"].notna().mean() > 0.99  # hourly observations: almost always one within 3 h
    by_tail = {t: g for t, g in flights.groupby("tail_num")}
    n, mx, mean, legs = [], [], [], []
    for f in want.itertuples():
        g = by_tail[f.tail_num]
        inside = g[(g["dep_ts"] >= f.dep_ts - pd.Timedelta(hours=12)) & (g["dep_ts"] < f.dep_ts)]
        known = inside[inside["arr_ts"] < f.dep_ts]["arr_delay"]
        n.append(len(known)), mx.append(known.max() if len(known) else np.nan)
        mean.append(known.mean() if len(known) else np.nan), legs.append(len(inside))
    np.testing.assert_array_equal(feats["tail_legs_12h"].to_numpy(), np.array(legs, float))
    np.testing.assert_array_equal(feats["tail_arrived_12h"].to_numpy(), np.array(n, float))
    np.testing.assert_allclose(feats["tail_arr_delay_max_12h"].to_numpy(float), np.array(mx, float), atol=1e-9)
    np.testing.assert_allclose(feats["tail_arr_delay_mean_12h"].to_numpy(float), np.array(mean, float), atol=1e-9)
    # the point of as-of: some inbound legs had not arrived at departure, and those are not counted
    assert (feats["tail_arrived_12h"] < feats["tail_legs_12h"]).sum() > 0


def test_the_model_finds_the_signal_planted_in_the_as_of_features(run, spark):
    """The pipeline's holdout AUC against the same spec without its as-of features."""
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score
    root = run[0]
    doc = json.loads((root / "runs" / NAME / f"ds={DS}" / "evaluation" / "evaluation.json").read_text())
    holdout, pred_without, _ = _holdout_and_fit_without_as_of(root, spark, NAME, "delayed", xgb.XGBClassifier)
    auc_without = roc_auc_score(holdout["delayed"], pred_without)
    assert doc["overall"]["n"] == len(holdout)
    assert doc["overall"]["auc"] >= auc_without + 0.1, (doc["overall"]["auc"], auc_without)
    top = sorted(doc["importance"], key=doc["importance"].get, reverse=True)[:5]
    assert set(top) & set(AS_OF), top


def _holdout_and_fit_without_as_of(root, spark, name: str, label: str, estimator):
    """(holdout rows, encoded; the holdout predictions of the same spec without its as-of features: plain
    XGBoost with the train step's params, fitted here on the same training set, windows and encodings)."""
    train_doc = json.loads((root / "runs" / name / f"ds={DS}" / "model" / "train.json").read_text())
    ts = (spark.read.format("delta").load(str(root / "lake" / name / "training_set"))
          .where(f"cutoff_ds = DATE'{DS}' AND {label} IS NOT NULL").toPandas())
    for c, vocab in train_doc["vocabularies"].items():
        ts[c] = pd.Categorical(ts[c], categories=vocab).codes
        ts.loc[ts[c] < 0, c] = len(vocab)
    without = [n for n in DatasetSpec.load(NAME).features.names if n not in AS_OF]
    part = {s: ts[ts["split"] == s] for s in ("train", "valid", "holdout")}
    p = {k: v for k, v in train_doc["params"].items() if k in ("n_estimators", "max_depth", "learning_rate", "subsample",
                                                                 "colsample_bytree", "min_child_weight", "reg_lambda",
                                                                 "scale_pos_weight", "early_stopping_rounds", "eval_metric",
                                                                 "objective")}
    m = estimator(**p, random_state=42).fit(part["train"][without].astype(float), part["train"][label],
                                            eval_set=[(part["valid"][without].astype(float), part["valid"][label])], verbose=False)
    x = part["holdout"][without].astype(float)
    return part["holdout"], (m.predict_proba(x)[:, 1] if hasattr(m, "predict_proba") else m.predict(x)), train_doc


def test_the_regression_variant_runs_by_spec_alone_with_metrics_equal_to_sklearn_and_finds_the_signal(runs, spark):
    """task: regression, label.expr "arr_delay": XGBoost regresses the minutes; RMSE, MAE and R² of the
    holdout equal scikit-learn's on the published model's own predictions; the slices have bootstrap
    intervals, fairness is the spread of the per-carrier MAE and mean residual; and the model explains far
    more of the variance than the same spec without its as-of features."""
    import xgboost as xgb
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from jobs.model import from_registry
    from jobs.registry import LocalRegistry
    root, dagrun = runs[0], runs[1][REGRESSION]
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    assert set(states.values()) == {"success"} and str(dagrun.state) == "success", states
    folder = root / "runs" / REGRESSION / f"ds={DS}"
    doc = json.loads((folder / "evaluation" / "evaluation.json").read_text())
    assert doc["task"] == "regression" and doc["blessing"]["blessed"], doc["blessing"]["reasons"]
    assert {c["name"] for c in doc["blessing"]["checks"]} >= {"r2", "r2_below_leakage_ceiling", "mae_gap[carrier]",
                                                              "mean_residual_gap[carrier]"}
    assert not any(c["name"].startswith(("auc", "pr_auc")) for c in doc["blessing"]["checks"])
    holdout, pred_without, train_doc = _holdout_and_fit_without_as_of(root, spark, REGRESSION, "arr_delay_min", xgb.XGBRegressor)
    assert train_doc["params"]["objective"] == "reg:squarederror" and train_doc["params"]["eval_metric"] == "rmse"
    reg = LocalRegistry(root / "registry")
    model = from_registry(reg, REGRESSION, reg.alias(REGRESSION, "champion")["version"])
    x = holdout[model.feature_names].astype("float32").to_numpy()
    pred = model.booster().inplace_predict(x).astype("float64")
    y = holdout["arr_delay_min"].to_numpy()
    o = doc["overall"]
    assert o["n"] == len(y)
    assert o["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)), rel=1e-6)
    assert o["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-6)
    assert o["r2"] == pytest.approx(r2_score(y, pred), rel=1e-6)
    assert o["r2"] >= r2_score(y, pred_without) + 0.15, (o["r2"], r2_score(y, pred_without))
    carriers = [s for s in doc["slices"] if s["attribute"] == "carrier"]
    assert len(carriers) == 6 and all(s["mae_ci"][0] <= s["mae"] <= s["mae_ci"][1] for s in carriers)
    [fair] = doc["fairness"]
    assert fair["mae_gap"] == pytest.approx(max(s["mae"] for s in carriers) - min(s["mae"] for s in carriers))
    html = (folder / "evaluation" / "report.html").read_text()
    assert "Predicted vs actual" in html and "MAE by carrier" in html and "ROC" not in html
    manifest = reg.manifest(REGRESSION, model.version)
    assert manifest["metrics"]["rmse"] == pytest.approx(o["rmse"]) and "regression" in (folder / "evaluation" / "model_card.md").read_text()


def test_the_regression_serves_its_day_in_minutes_and_monitoring_measures_realized_rmse(runs, spark):
    """score_pipeline of the regression: every example of the day gets its predicted delay (no decision: a
    regression has no threshold), and the day's monitoring records realized RMSE, MAE and R² equal to
    scikit-learn's on those predictions and the labels."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    root, scored = runs[0], runs[1][("score", REGRESSION)]
    states = {ti.task_id: str(ti.state) for ti in scored.get_task_instances()}
    assert states == {"landed": "success", "etl": "skipped", "validate": "skipped", "score": "success",
                      "promote": "success", "monitor": "success"}, states
    assert str(runs[1][("monitor", REGRESSION)].get_task_instance("monitor").state) == "success"
    lake = root / "lake" / REGRESSION
    preds = spark.read.format("delta").load(str(lake / "predictions")).where(f"ds = DATE'{DS}'").toPandas()
    silver = spark.read.format("delta").load(str(lake / "silver_flights")).where(f"ds = DATE'{DS}'").toPandas()
    assert len(preds) == len(silver) and set(preds["served_by"]) == {"champion"} and preds["decision"].isna().all()
    assert (preds["score"] < 0).any()  # minutes, not a probability: early arrivals are predicted too
    joined = preds.merge(silver[["flight_id", "arr_delay"]], on="flight_id")
    figures = (spark.read.format("delta").load(str(lake / "monitoring"))
               .where(f"ds = DATE'{DS}' AND kind = 'performance' AND slice IS NULL").toPandas().set_index("metric")["value"])
    assert figures["rmse"] == pytest.approx(np.sqrt(mean_squared_error(joined["arr_delay"], joined["score"])), rel=1e-9)
    assert figures["mae"] == pytest.approx(mean_absolute_error(joined["arr_delay"], joined["score"]), rel=1e-9)
    assert figures["r2"] == pytest.approx(r2_score(joined["arr_delay"], joined["score"]), rel=1e-9)


def test_the_multiclass_variant_trains_evaluates_serves_and_monitors_with_sklearns_figures(runs, spark):
    """task: multiclass (on time, late, cancelled): XGBoost's multi:softprob; log loss, accuracy, macro-F1
    and per-class recall of the holdout equal scikit-learn's on the published model's probabilities; fairness
    is the largest spread of a class's recall between carriers; the served day has every class's probability
    and the predicted class, and its monitoring the realized log loss and macro-F1."""
    from sklearn.metrics import f1_score, log_loss, recall_score

    from jobs.model import from_registry
    from jobs.registry import LocalRegistry
    root, out = runs
    for key in (MULTICLASS, ("score", MULTICLASS)):
        states = {ti.task_id: str(ti.state) for ti in out[key].get_task_instances()}
        assert set(states.values()) <= {"success", "skipped"} and str(out[key].state) == "success", states
    folder = root / "runs" / MULTICLASS / f"ds={DS}"
    doc = json.loads((folder / "evaluation" / "evaluation.json").read_text())
    assert doc["task"] == "multiclass" and doc["blessing"]["blessed"], doc["blessing"]["reasons"]
    train_doc = json.loads((folder / "model" / "train.json").read_text())
    assert train_doc["params"]["objective"] == "multi:softprob" and train_doc["classes"] == list(STATUS)
    ts = (spark.read.format("delta").load(str(root / "lake" / MULTICLASS / "training_set"))
          .where(f"cutoff_ds = DATE'{DS}' AND split = 'holdout' AND status IS NOT NULL").toPandas())
    for c, vocab in train_doc["vocabularies"].items():
        ts[c] = pd.Categorical(ts[c], categories=vocab).codes
        ts.loc[ts[c] < 0, c] = len(vocab)
    reg = LocalRegistry(root / "registry")
    model = from_registry(reg, MULTICLASS, reg.alias(MULTICLASS, "champion")["version"])
    probs = model.booster().inplace_predict(ts[model.feature_names].astype("float32").to_numpy()).astype("float64")
    y, o = ts["status"].to_numpy(), doc["overall"]
    assert o["n"] == len(y) and set(y) == {0, 1, 2}
    assert o["logloss"] == pytest.approx(log_loss(y, probs, labels=[0, 1, 2]), rel=1e-6)
    assert o["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"), rel=1e-6)
    for i, c in enumerate(STATUS):
        assert o[f"recall[{c}]"] == pytest.approx(recall_score(y, probs.argmax(1), labels=[i], average=None)[0], rel=1e-6)
    [fair] = doc["fairness"]
    carriers = [s for s in doc["slices"] if s["attribute"] == "carrier"]
    gaps = {c: max(s[f"recall[{c}]"] for s in carriers) - min(s[f"recall[{c}]"] for s in carriers) for c in STATUS}
    assert fair["recall_gap"] == pytest.approx(max(gaps.values())) and fair["recall_gap_class"] == max(gaps, key=gaps.get)
    assert "Per class" in (folder / "evaluation" / "report.html").read_text()
    preds = (spark.read.format("delta").load(str(root / "lake" / MULTICLASS / "predictions"))
             .where(f"ds = DATE'{DS}'").toPandas())
    p = np.vstack(preds["probabilities"].to_numpy())
    assert p.shape[1] == 3 and np.allclose(p.sum(1), 1) and preds["decision"].isna().all()
    assert (preds["predicted_class"] == np.array(STATUS)[p.argmax(1)]).all() and np.allclose(preds["score"], p.max(1))
    silver = (spark.read.format("delta").load(str(root / "lake" / MULTICLASS / "silver_flights"))
              .where(f"ds = DATE'{DS}'").toPandas())
    truth = np.where(silver["arr_delay"].isna(), 2, np.where(silver["arr_delay"] > 15, 1, 0))
    joined = preds.merge(silver.assign(y=truth)[["flight_id", "y"]], on="flight_id")
    figures = (spark.read.format("delta").load(str(root / "lake" / MULTICLASS / "monitoring"))
               .where(f"ds = DATE'{DS}' AND kind = 'performance' AND slice IS NULL").toPandas().set_index("metric")["value"])
    jp = np.vstack(joined["probabilities"].to_numpy())
    assert figures["logloss"] == pytest.approx(log_loss(joined["y"], jp, labels=[0, 1, 2]), rel=1e-9)
    assert figures["macro_f1"] == pytest.approx(f1_score(joined["y"], jp.argmax(1), average="macro"), rel=1e-9)


def test_status_shows_each_dags_last_runs_with_outcome_and_duration_beside_the_models_scoring_and_monitoring(runs):
    """``make status`` for the multiclass variant: its train, score and monitor DAG runs of this module, read
    from Airflow's metadata database, with their outcome and duration; then the champion, the scored day and
    the monitoring verdict."""
    from jobs.common.config import Settings
    from jobs.status import DAG_KINDS, dag_runs, report
    dag_ids = [f"{kind}__{MULTICLASS}" for kind in DAG_KINDS]
    found = dag_runs(dag_ids)
    for dag_id in dag_ids:
        mine = [r for r in found[dag_id] if r["ds"] == DS.isoformat()]
        assert mine and mine[0]["state"] == "success" and mine[0]["seconds"] > 1 and mine[0]["failed"] == [], found[dag_id]
    lines = "\n".join(report(Settings.load(os.environ["TRAINYARD_CONF"]), MULTICLASS, 7, found))
    for kind in DAG_KINDS:
        assert re.search(rf"  {kind} +{DS.isoformat()} success in \d+\.\d min", lines), lines
    assert "champion   " in lines and f"scoring    last day {DS.isoformat()}" in lines and f"monitor    {DS.isoformat()}" in lines
