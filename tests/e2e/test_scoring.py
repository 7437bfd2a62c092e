"""Daily scoring fails clean: drills on a real lake and a real registry, built by the step functions in this
process (one shared Spark session): two published models trained on two cutoffs (champion and previous
champion), each with its baseline, then scoring of a later day

- by the champion, equal to plain XGBoost's scores on the same features to 1e-6, and a rerun that replaces
  the day's partition;
- with the champion's artifact corrupted: the previous champion serves every row;
- with a feature the models read gone from the spec: the baseline serves every row;
- with the day failing a critical expectation: its staged rows, scored by the baseline;
- with nothing that can serve: one clear line, the exit code, nothing written.

Every case: ``predictions`` holds exactly one row per example of the day, and ``scoring_events`` says who
served and why."""
from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from jobs import etl, evaluate, features, promote, publish, score, synth, train, validate
from jobs.common.config import DatasetSpec, Settings, load_params
from jobs.common.errors import ValidationFailed
from jobs.model import from_registry
from jobs.registry import open_registry
from tests.conftest import REPO, write_conf
from tests.helpers import context

START, DAYS = dt.date(2026, 8, 1), 25
C1, C2 = dt.date(2026, 8, 22), dt.date(2026, 8, 23)   # the two training cutoffs: previous champion, champion
S = dt.date(2026, 8, 24)                               # the scored day
BAD = dt.date(2026, 8, 25)                             # a day that fails validation (landed, not processed)


def _params() -> dict:
    p = load_params(REPO / "params.yaml")
    p["features"]["split"] = {"train_days": 8, "valid_days": 2, "holdout_days": 2}
    p["train"].update(n_estimators=40, checkpoint_every=0)
    p["evaluate"].update(bootstrap_replicates=0, shap_rows=200, slice_pairs=False)
    p["evaluate"]["gate"]["mode"] = "dry_run"  # tiny windows: the checks are reported, the models published
    p["publish"]["mode"] = "direct"
    p["promote"]["min_days"] = 2
    return p


@pytest.fixture(scope="module")
def lake(spark, cards, tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    conf = write_conf(root)
    settings = Settings.load(conf)
    synth.generate(synth.SynthConfig(start=START, days=DAYS, rows_per_day=600, seed=17), root / "landing" / "cards")
    params = _params()

    def run(step, module, ds, start=None):  # as the step's CLI does: the step, then its lineage record
        ctx = context(step, cards, settings, ds.isoformat(), start and start.isoformat(), params=params)
        module.run(ctx)
        ctx.record()
    run("etl", etl, S, START)
    run("validate", validate, S, START)
    for cutoff in (C1, C2):
        run("features", features, cutoff, START if cutoff == C1 else None)
        for step, module in (("train", train), ("evaluate", evaluate), ("publish", publish)):
            run(step, module, cutoff)
    reg = open_registry(settings.registry)
    champion = reg.alias("cards", "champion")
    assert champion["version"].startswith(str(C2)) and champion["previous"].startswith(str(C1))
    return {"root": root, "conf": conf, "settings": settings, "params": params, "reg": reg,
            "champion": champion["version"], "previous": champion["previous"]}


def _score(lake, spec=None, ds=S):
    ctx = context("score", spec or DatasetSpec.load("cards"), lake["settings"], ds.isoformat(), params=lake["params"])
    score.run(ctx)
    ctx.record()  # what the CLI shell does after the step: the day's lineage/score.json
    return ctx


def _day(spark, lake, table, ds=S):
    return spark.read.format("delta").load(f"{lake['settings'].lake}/cards/{table}").where(F.col("ds") == F.lit(ds))


def _examples(spark, lake, ds=S, table="silver_transactions") -> int:
    return _day(spark, lake, table, ds).count()


def _event(spark, lake, ds=S, role="serving"):
    [row] = _day(spark, lake, "scoring_events", ds).where(F.col("role") == role).collect()
    return row


def _served(spark, lake, ds=S) -> dict:
    rows = _day(spark, lake, "predictions", ds).groupBy("served_by", "model_version", "reason").count().collect()
    return {(r["served_by"], r["model_version"], r["reason"]): r["count"] for r in rows}


def test_the_champion_scores_every_example_as_plain_xgboost_does_and_a_rerun_replaces(spark, cards, lake):
    import numpy as np
    _score(lake)
    n = _examples(spark, lake)
    assert n > 400
    assert _served(spark, lake) == {("champion", lake["champion"], None): n}
    preds = _day(spark, lake, "predictions")
    assert preds.select("txn_id").distinct().count() == n
    version = spark.sql(f"DESCRIBE HISTORY delta.`{lake['settings'].lake}/cards/predictions`").first()["version"]

    # the same features, scored by plain xgboost in this process
    model = from_registry(lake["reg"], "cards", lake["champion"])
    silver = spark.read.format("delta").load(f"{lake['settings'].lake}/cards/silver_transactions")
    feats = score.scoring_features(silver, cards, S).toPandas().set_index("txn_id")
    import xgboost as xgb
    dm = xgb.DMatrix(feats[model.feature_names].astype("float32"), feature_types=model.feature_types,
                     enable_categorical=True, missing=np.nan)
    expected = model.booster().predict(dm)
    got = preds.select("txn_id", "score", "decision").toPandas().set_index("txn_id").loc[feats.index]
    assert np.abs(got["score"].to_numpy() - expected).max() < 1e-6
    assert (got["decision"] == (got["score"] >= lake["params"]["evaluate"]["threshold"])).all()

    _score(lake)  # a rerun replaces the day: same rows, a new Delta version, no duplicate
    again = _day(spark, lake, "predictions")
    assert again.count() == n and again.select("txn_id").distinct().count() == n
    assert spark.sql(f"DESCRIBE HISTORY delta.`{lake['settings'].lake}/cards/predictions`").first()["version"] > version
    event = _event(spark, lake)
    assert (event["served_by"], event["rows"], event["examples"], event["reason"]) == ("champion", n, n, None)


def test_a_corrupt_champion_artifact_hands_every_row_to_the_previous_champion(spark, lake):
    art = Path(lake["reg"].location("cards", lake["champion"])) / "model.ubj"
    good = art.read_bytes()
    try:
        art.write_bytes(good[:-64] + b"\0" * 64)
        ctx = _score(lake)
    finally:
        art.write_bytes(good)
    n = _examples(spark, lake)
    assert _served(spark, lake) == {("fallback:previous_champion", lake["previous"], "champion: checksum_mismatch"): n}
    assert ctx.counts["served_by"] == "fallback:previous_champion"
    event = _event(spark, lake)
    attempts = json.loads(event["attempts"])
    assert [(a["candidate"], a["reason"]) for a in attempts] == [("champion", "checksum_mismatch"), ("previous_champion", None)]
    assert "sha256" in attempts[0]["detail"] and event["rows"] == n


def test_a_feature_gone_from_the_day_hands_every_row_to_the_baseline(spark, lake, tmp_path):
    doc = yaml.safe_load((REPO / "conf" / "datasets" / "cards.yaml").read_text())
    del doc["features"]["derived"]["is_foreign"]  # the merchants' country is no longer there to derive it from
    (tmp_path / "cards.yaml").write_text(yaml.safe_dump(doc))
    _score(lake, DatasetSpec.load(str(tmp_path / "cards.yaml")))
    n = _examples(spark, lake)
    why = "champion: feature_missing:is_foreign; previous_champion: feature_missing:is_foreign"
    assert _served(spark, lake) == {("fallback:baseline", lake["champion"], why): n}
    scores = _day(spark, lake, "predictions").select("score").distinct().count()
    assert 1 < scores <= 5  # the label rate of each channel (four, and the overall rate for any other)


def test_a_day_that_failed_validation_is_scored_from_its_staged_rows_by_the_baseline(spark, cards, lake, tmp_path,
                                                                                    monkeypatch):
    """Upstream starts sending a channel the GX suite does not know, and ETL (its rule dropped from the spec,
    kept as a critical rule of the suite file) lets it through: the day fails its audit and never reaches
    silver, yet every staged row is scored."""
    import dataclasses
    part = lake["root"] / "landing" / "cards" / "transactions" / f"ds={BAD}" / "part-00000.csv"
    part.write_text(part.read_text().replace(",chip,", ",teleport,"))
    src = cards.sources["transactions"]
    loose = dataclasses.replace(cards, sources={**cards.sources, "transactions": dataclasses.replace(
        src, columns=tuple(dataclasses.replace(c, values=None) if c.name == "channel" else c for c in src.columns))})
    monkeypatch.setattr(validate, "EXPECTATIONS_DIR", tmp_path)
    (tmp_path / "cards_silver_transactions.json").write_text(json.dumps({"name": "cards_silver_transactions", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "severity": "critical",
         "kwargs": {"column": "channel", "value_set": ["chip", "contactless", "swipe", "online"]}}]}))
    ctx = lambda step: context(step, loose, lake["settings"], BAD.isoformat(), params=copy.deepcopy(lake["params"]))  # noqa: E731
    etl.run(ctx("etl"))
    with pytest.raises(ValidationFailed, match="expect_column_values_to_be_in_set on column 'channel'"):
        validate.run(ctx("validate"))
    assert _examples(spark, lake, BAD) == 0  # nothing of the day reached silver
    staged = _examples(spark, lake, BAD, "staged_transactions")
    _score(lake, ds=BAD)
    assert _served(spark, lake, BAD) == {
        ("fallback:baseline", lake["champion"], "champion: validation_failed; previous_champion: validation_failed"): staged}
    assert _day(spark, lake, "predictions", BAD).select("txn_id").distinct().count() == staged > 200


def test_with_nothing_able_to_serve_the_task_fails_in_one_line_and_writes_nothing(spark, lake, capsys):
    reg_root = Path(lake["settings"].registry) / "cards" / "versions"
    saved = {p: p.read_bytes() for p in reg_root.glob("*/*") if p.name in ("model.ubj", "baseline.json")}
    version = spark.sql(f"DESCRIBE HISTORY delta.`{lake['settings'].lake}/cards/predictions`").first()["version"]
    n = _day(spark, lake, "predictions").count()
    try:
        for p in saved:
            p.write_bytes(b"corrupt")
        with pytest.raises(SystemExit) as exit_:
            score.main(["--ds", S.isoformat(), "--conf", str(lake["conf"]), "--dataset", "cards"])
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == score.ScoringFailed.exit_code and len(err) == 1, err
    assert err[0].startswith("trainyard score FAILED [ScoringFailed]: cards ds 2026-08-24: no model of the fallback chain")
    assert "champion: checksum_mismatch; previous_champion: checksum_mismatch; baseline: checksum_mismatch" in err[0]
    assert spark.sql(f"DESCRIBE HISTORY delta.`{lake['settings'].lake}/cards/predictions`").first()["version"] == version
    assert _day(spark, lake, "predictions").count() == n  # the day keeps its last complete predictions
    event = _event(spark, lake)
    assert event["served_by"] is None and event["rows"] == 0


# ---------------------------------------------------------------- shadow scoring and promotion
SHADOW_DAYS = [dt.date(2026, 8, 12), dt.date(2026, 8, 13)]  # scored (again) with a challenger; promote.min_days: 2
EARLY = dt.date(2026, 8, 20)  # by this cutoff no shadow day's labels have matured (10 days)


def _promote(lake, ds, **gate):
    params = copy.deepcopy(lake["params"])
    params["evaluate"]["gate"].update(gate)
    ctx = context("promote", DatasetSpec.load("cards"), lake["settings"], ds.isoformat(), params=params)
    promote.run(ctx)
    return ctx.counts


def _shadow_days(spark, lake):
    for d in SHADOW_DAYS:
        ctx = _score(lake, ds=d)
        assert ctx.counts["shadow"]["served_by"] == "challenger"
        assert _day(spark, lake, "shadow_predictions", d).join(_day(spark, lake, "predictions", d), ["txn_id", "ds"]).count() \
            == _day(spark, lake, "predictions", d).count() == _examples(spark, lake, d)


@pytest.fixture(scope="module")
def shuffled(spark, cards, lake):
    """A model trained on shuffled labels at cutoff C2 (no signal left), evaluated and published in shadow
    mode: the challenger of a champion trained on the real ones."""
    import numpy as np
    import xgboost as xgb

    from jobs.common.files import sha256_file
    from jobs.model import feature_types
    run_dir = Path(lake["settings"].runs) / "cards" / f"ds={C2}"
    ts = spark.read.format("delta").load(f"{lake['settings'].lake}/cards/training_set").where(
        f"cutoff_ds = DATE'{C2}' AND split = 'train' AND is_fraud IS NOT NULL").toPandas()
    y = np.random.default_rng(0).permutation(ts["is_fraud"].to_numpy())
    dm = xgb.DMatrix(ts[cards.features.names].astype("float32"), label=y, feature_types=feature_types(cards),
                     enable_categorical=True)
    booster = xgb.train({"max_depth": 4, "seed": 1, "objective": "binary:logistic"}, dm, 30)
    booster.feature_names, booster.feature_types = cards.features.names, feature_types(cards)
    booster.save_model(str(run_dir / "model" / "model.ubj"))
    doc = json.loads((run_dir / "model" / "train.json").read_text())
    (run_dir / "model" / "train.json").write_text(json.dumps({**doc, "sha256": sha256_file(run_dir / "model" / "model.ubj")}))
    params = copy.deepcopy(lake["params"])
    params["publish"]["mode"] = "shadow"
    for step, module in (("evaluate", evaluate), ("publish", publish)):
        ctx = context(step, cards, lake["settings"], C2.isoformat(), params=params)
        module.run(ctx)
        ctx.record()
    version = lake["reg"].alias("cards", "challenger")["version"]
    assert version.startswith(str(C2)) and version != lake["champion"]
    assert lake["reg"].alias("cards", "champion")["version"] == lake["champion"]  # shadow: the champion stays
    return version


def test_a_worse_challenger_waits_for_its_labels_then_is_retired(spark, lake, shuffled):
    _shadow_days(spark, lake)
    early = _promote(lake, EARLY)
    assert early["decision"] == "wait" and "matured for 0 shadow day(s), 2 needed" in early["why"]
    assert lake["reg"].alias("cards", "challenger")["version"] == shuffled
    late = _promote(lake, S)
    assert late["decision"] == "retire" and late["why"].startswith("worse: AUC challenger"), late["why"]
    assert lake["reg"].alias("cards", "challenger") is None
    assert lake["reg"].alias("cards", "champion")["version"] == lake["champion"]
    [event] = [e for e in lake["reg"].history("cards", "challenger") if e["event"] == "retire"]
    assert event["previous"] == shuffled and event["version"] is None and "worse" in event["reason"]
    decisions = spark.read.format("delta").load(f"{lake['settings'].lake}/cards/shadow_decisions").collect()
    assert {(str(r["ds"]), r["decision"], r["matured_days"]) for r in decisions} == {(str(EARLY), "wait", 0), (str(S), "retire", 2)}


def test_a_better_challenger_is_promoted_and_an_unfair_one_retired_naming_the_check(spark, lake, shuffled):
    reg = lake["reg"]  # a person put the shuffled model in charge; the real one returns as the challenger
    reg.set_alias("cards", "champion", shuffled, reason="manual promote (a mistake)", event="promote")
    reg.set_alias("cards", "challenger", lake["champion"], reason="shadow the model it replaced", event="promote")
    _shadow_days(spark, lake)
    # a bar on the spread of predicted-positive rates across genders that no model meets: blocking here
    unfair = _promote(lake, S, max_demographic_parity_difference=0.0, warn_only=["min_disparate_impact_ratio"])
    assert unfair["decision"] == "retire" and unfair["why"].startswith("fails the fairness check(s) "), unfair["why"]
    assert "demographic_parity_difference[gender]" in unfair["why"]
    assert reg.alias("cards", "challenger") is None and reg.alias("cards", "champion")["version"] == shuffled

    reg.set_alias("cards", "challenger", lake["champion"], reason="shadow it again", event="promote")
    better = _promote(lake, S)
    assert better["decision"] == "promote" and better["why"].startswith("better: AUC challenger"), better["why"]
    champion = reg.alias("cards", "champion")
    assert champion["version"] == lake["champion"] and champion["previous"] == shuffled and champion["event"] == "promote"
    assert reg.alias("cards", "challenger") is None
    moves = [(e["alias"], e["event"]) for e in reg.history("cards")][-4:]
    assert moves == [("challenger", "retire"), ("challenger", "promote"), ("champion", "promote"), ("challenger", "promoted")]
    decision = json.loads((Path(lake["settings"].runs) / "cards" / f"ds={S}" / "promote" / "decision.json").read_text())
    assert decision["difference"]["auc_ci"][0] > 0 and 0 <= decision["decision_agreement"] <= 1
    assert decision["compared_after"] == "2026-08-11"  # both models' valid window ends there: later days only


def test_status_shows_both_models_the_last_scored_day_the_fallback_days_and_the_last_decision(lake):
    from jobs.status import report
    lines = "\n".join(report(lake["settings"], "cards", days=7))
    assert f"champion   {lake['champion']}" in lines and "challenger none" in lines
    assert "scoring    last day 2026-08-25" in lines and "fallback days among the last 4 scored: 2" in lines
    assert "FALLBACK 2026-08-24: fallback:baseline" in lines and "feature_missing:is_foreign" in lines
    assert "FALLBACK 2026-08-25: fallback:baseline" in lines and "validation_failed" in lines
    assert f"promote    {S}: PROMOTE challenger {lake['champion']}" in lines


def test_each_version_holds_the_reference_profile_of_its_train_window_and_its_holdout_scores(cards, lake):
    reg = lake["reg"]
    manifest = reg.verify("cards", lake["previous"])  # the profile is checksummed like the model and the baseline
    prof = json.loads(reg.artifact_file("cards", lake["previous"], manifest["profile"]["artifact"]).read_text())
    assert set(prof) == set(cards.features.names) and manifest["profile"]["rows"] > 2000
    for name, col in prof.items():
        assert sum(col["counts"]) + col["nulls"] == col["rows"] == manifest["profile"]["rows"], name
        assert col["kind"] == ("categorical" if name in cards.features.categorical else "numeric")
    assert prof["amount"]["edges"] == sorted(prof["amount"]["edges"]) and len(prof["amount"]["edges"]) >= 5
    scores = json.loads(reg.artifact_file("cards", lake["previous"], "evaluation.json").read_text())["score_profile"]
    assert scores["kind"] == "numeric" and sum(scores["counts"]) == scores["rows"] > 0


def test_the_golden_set_pinned_by_the_first_cutoff_never_reaches_a_later_training_window(spark, lake):
    lake_root = f"{lake['settings'].lake}/cards"
    golden = spark.read.format("delta").option("versionAsOf", 0).load(f"{lake_root}/golden_set")
    assert {r["cutoff_ds"] for r in golden.select("cutoff_ds").distinct().collect()} == {C1}  # the first training set's
    keys = golden.select("txn_id")
    later = spark.read.format("delta").load(f"{lake_root}/training_set").where(F.col("cutoff_ds") == F.lit(C2))
    assert later.where(F.col("split").isin("train", "valid")).join(keys, "txn_id").count() == 0
    moved = later.where(F.col("split") == "golden")
    assert moved.count() > 0 and moved.join(keys, "txn_id").count() == moved.count()  # kept, never fitted on
    ev = json.loads(lake["reg"].artifact_file("cards", lake["champion"], "evaluation.json").read_text())
    assert ev["golden"]["version"] == 0 and ev["golden"]["challenger_auc"] > 0.5
