"""Monitoring and the retraining trigger on generated data, built by the step functions in this process (one
shared Spark session): a real lake, a model trained and published at cutoff C on a history long enough for
every 30-day feature window to be full, then day after day ``score`` and ``monitor``

- for 10 days with nothing changed: no feature drifts, nothing is triggered;
- then amounts shifted x2.5 and a merchant category added (the merchants snapshot re-classifies a share of
  its merchants): drift recorded for exactly the features computed from those columns, retraining
  triggered once, with the reason; the cooldown holds it back on the following days;
- on a copy of the lake where fraud changes its pattern right after C (invisible in the features): nothing
  is triggered while the labels of the changed days are young, and retraining is triggered for realized
  performance once they have matured. There, to save time, the features of every later day come from one
  range run of ``features``, only the first two changed days are scored (the realized figures the trigger
  needs are theirs), and only the days from three before their labels mature on are monitored (what the
  trigger's window of three days looks at).

Every monitored day is rows of the ``monitoring`` table (one per ds x kind x metric x feature x slice), a
verdict and a self-contained drift report."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time

import pytest
from pyspark.sql import functions as F

from jobs import etl, evaluate, features, monitor, publish, score, synth, train, validate
from jobs.common.config import Settings, load_params
from tests.conftest import REPO, write_conf
from tests.helpers import context

START, ROWS = dt.date(2026, 5, 1), 1500
C = START + dt.timedelta(days=52)        # the training cutoff: its train window starts 31 days after START
QUIET = [C + dt.timedelta(days=i) for i in range(1, 11)]       # 10 days, nothing changed
X = C + dt.timedelta(days=11)            # amounts shift and a merchant category appears
DRIFT = [X + dt.timedelta(days=i) for i in range(3)]
CHANGED = [C + dt.timedelta(days=i) for i in range(1, 13)]     # fraud-change lake: the days after C ...
SCORED, WATCHED = CHANGED[:2], CHANGED[7:]                     # ... the two scored, the five monitored
AMOUNT_FEATURES = {"amount", "log_amount", "card_amount_sum_24h", "card_amount_mean_30d", "card_amount_max_30d",
                   "amount_to_card_mean_30d"}


def _params() -> dict:
    p = load_params(REPO / "params.yaml")
    p["features"]["split"] = {"train_days": 8, "valid_days": 2, "holdout_days": 2}
    p["train"].update(n_estimators=60, checkpoint_every=0)
    p["evaluate"].update(bootstrap_replicates=0, shap_rows=200, slice_pairs=False)
    p["evaluate"]["gate"]["mode"] = "dry_run"
    p["publish"]["mode"] = "direct"
    return p


def _config(days: int, **drift) -> synth.SynthConfig:
    return synth.SynthConfig(start=START, days=days, rows_per_day=ROWS, seed=23, **drift)


class Lake:
    """A root (landing, lake, runs, registry) and the steps run on it in this process."""

    def __init__(self, root, cards, params):
        self.root, self.cards, self.params = root, cards, params
        self.conf = write_conf(root)
        self.settings = Settings.load(self.conf)
        self.verdicts: dict[dt.date, dict] = {}

    def step(self, name, module, ds, start=None):
        t0 = time.monotonic()
        ctx = context(name, self.cards, self.settings, ds.isoformat(), start and start.isoformat(), params=self.params)
        module.run(ctx)
        ctx.record()
        print(f"{name} {ds}: {time.monotonic() - t0:.1f} s")
        return ctx

    def prepare(self, first, last):
        self.step("etl", etl, last, first)
        self.step("validate", validate, last, first)

    def watch(self, days, scored=True):
        for d in days:
            if scored:
                self.step("score", score, d)
            ctx = self.step("monitor", monitor, d)
            self.verdicts[d] = json.loads((ctx.run_dir / "monitor" / "verdict.json").read_text())


@pytest.fixture(scope="module")
def history(spark, cards, tmp_path_factory):
    """The shared history: days START..C processed, one model trained at C and published as champion."""
    lake = Lake(tmp_path_factory.mktemp("monitoring"), cards, _params())
    synth.generate(_config(53 + 10 + 3, drift_from=63, amount_shift=2.5), lake.root / "landing" / "cards")
    lake.prepare(START, C)
    lake.step("features", features, C, START)
    for name, module in (("train", train), ("evaluate", evaluate), ("publish", publish)):
        lake.step(name, module, C)
    lake.snapshot = tmp_path_factory.mktemp("fraud-change")  # the history as it is now, for the other lake
    for part in ("lake", "runs", "registry"):
        shutil.copytree(lake.root / part, lake.snapshot / part)
    return lake


@pytest.fixture(scope="module")
def fraud_lake(history):
    """The history (copied before any later day) whose landing, from C + 1 on, has fraud in another pattern."""
    root = history.snapshot
    lake = Lake(root, history.cards, history.params)
    synth.generate(_config(53 + 12, drift_from=53, fraud_change=True), root / "landing" / "cards")
    lake.prepare(CHANGED[0], CHANGED[-1])
    lake.step("features", features, CHANGED[-1], CHANGED[0])
    for d in SCORED:
        lake.step("score", score, d)
    lake.watch(WATCHED, scored=False)
    return lake


@pytest.fixture(scope="module")
def drift_lake(history):
    """The history, 10 quiet days, then the drifted days (the merchants snapshot re-classified before them)."""
    history.prepare(QUIET[0], QUIET[-1])
    history.watch(QUIET)
    moved = synth.recategorize_merchants(history.root / "landing" / "cards", share=0.3, seed=5)
    assert moved > 0
    history.prepare(DRIFT[0], DRIFT[-1])
    history.watch(DRIFT)
    return history


def _monitoring(spark, lake):
    return spark.read.format("delta").load(f"{lake.settings.lake}/cards/monitoring")


def _drifted(spark, lake, day) -> set[str]:
    rows = (_monitoring(spark, lake).where((F.col("ds") == F.lit(day)) & (F.col("kind") == "feature_drift")
                                           & (F.col("metric") == "drifted") & F.col("breached")).collect())
    return {r["feature"] for r in rows}


def test_ten_quiet_days_drift_nowhere_and_trigger_nothing(spark, drift_lake):
    for d in QUIET:
        v = drift_lake.verdicts[d]
        assert not v["retrain"], (d, v["reason"])
        assert _drifted(spark, drift_lake, d) == set(), d
        assert not any(s["on"] for s in v["signals"].values()), (d, v["signals"])


def test_shifted_amounts_and_a_new_category_drift_exactly_those_features_and_trigger_once(spark, drift_lake):
    for d in DRIFT:
        drifted = _drifted(spark, drift_lake, d)
        assert {"amount", "log_amount", "merchant_category"} <= drifted, (d, drifted)
        assert drifted <= AMOUNT_FEATURES | {"merchant_category"}, (d, drifted)
    fired = [d for d in DRIFT if drift_lake.verdicts[d]["retrain"]]
    assert len(fired) == 1, {d.isoformat(): drift_lake.verdicts[d]["reason"] for d in DRIFT}
    reason = drift_lake.verdicts[fired[0]]["reason"]
    assert "data_drift on 2 of the last 3 days" in reason and "amount (psi" in reason and "merchant_category" in reason
    later = [drift_lake.verdicts[d]["reason"] for d in DRIFT if d > fired[0]]
    assert later and all(f"retraining was triggered on {fired[0]}" in r for r in later)
    trig = (_monitoring(spark, drift_lake).where((F.col("kind") == "trigger") & F.col("breached"))
            .select("ds", "detail").collect())
    assert [(r["ds"], r["detail"]) for r in trig] == [(fired[0], reason)]


def test_a_fraud_pattern_change_triggers_once_its_labels_have_matured_not_before(spark, fraud_lake):
    maturity = fraud_lake.cards.label.maturity_days
    first_matured = CHANGED[0] + dt.timedelta(days=maturity)
    assert WATCHED[:3] == [first_matured - dt.timedelta(days=i) for i in (3, 2, 1)]
    early = [d for d in WATCHED if d < first_matured]
    assert all(not fraud_lake.verdicts[d]["retrain"] for d in early), \
        {d.isoformat(): fraud_lake.verdicts[d]["reason"] for d in early if fraud_lake.verdicts[d]["retrain"]}
    fired = [d for d in WATCHED if fraud_lake.verdicts[d]["retrain"]]
    assert len(fired) == 1 and first_matured <= fired[0], {d.isoformat(): fraud_lake.verdicts[d]["reason"] for d in WATCHED}
    assert "performance on 2 of the last 3 days" in fraud_lake.verdicts[fired[0]]["reason"]
    perf = (_monitoring(spark, fraud_lake).where((F.col("kind") == "performance") & (F.col("metric") == "auc")
                                                 & F.col("slice").isNull() & F.col("value").isNotNull())
            .select("ds", "subject_ds", "value").orderBy("ds").collect())
    assert perf and all(r["subject_ds"] == r["ds"] - dt.timedelta(days=maturity) for r in perf)
    assert max(r["value"] for r in perf) < fraud_lake.params["monitor"]["realized"]["min_auc"]


def test_the_monitoring_table_has_one_row_per_figure_and_a_rerun_replaces_the_day(spark, drift_lake):
    keys = ["ds", "kind", "metric", "feature", "slice"]
    table = _monitoring(spark, drift_lake)
    assert table.groupBy(*keys).count().where(F.col("count") > 1).count() == 0
    day = DRIFT[-1]
    before = table.where(F.col("ds") == F.lit(day)).count()
    drift_lake.step("monitor", monitor, day)
    after = _monitoring(spark, drift_lake).where(F.col("ds") == F.lit(day))
    assert after.count() == before
    kinds = {r["kind"] for r in after.select("kind").distinct().collect()}
    assert {"feature_drift", "null_rate", "prediction_drift", "volume", "performance", "fairness", "signal", "trigger"} <= kinds


def test_the_verdict_cli_and_the_drift_report(drift_lake):
    fired = next(d for d in DRIFT if drift_lake.verdicts[d]["retrain"])

    def verdict(day):
        return subprocess.run([sys.executable, "-m", "jobs.monitor", "--verdict", "--ds", day.isoformat(),
                               "--conf", str(drift_lake.conf)], cwd=REPO, capture_output=True, text=True)
    yes, no = verdict(fired), verdict(QUIET[0])
    assert yes.returncode == 0 and yes.stdout.strip().splitlines()[-1].endswith(drift_lake.verdicts[fired]["reason"])
    assert no.returncode == monitor.NO_RETRAIN_EXIT and "no retraining" in no.stdout
    page = (drift_lake.root / "runs" / "cards" / f"ds={fired}" / "monitor" / "report.html").read_text()
    assert page.count("<svg") >= 3 and "RETRAINING TRIGGERED" in page and "amount: psi" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from anywhere
    from jobs.status import report
    lines = "\n".join(report(drift_lake.settings, "cards", days=7))
    assert f"monitor    {DRIFT[-1]}: no retraining (signals on: data_drift, prediction_drift)" in lines
    assert f"drift report {drift_lake.root / 'runs' / 'cards' / f'ds={DRIFT[-1]}' / 'monitor' / 'report.html'}" in lines
