"""GX validation on tiny staged frames (write-audit-publish): critical failures stop the run naming the column
and leave silver exactly as it was; warnings don't; a clean day is published to silver."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from jobs import validate
from jobs.common import delta_io
from jobs.common.errors import ValidationFailed
from tests.helpers import context

COLS = ("txn_id string, event_ts timestamp, card_id string, customer_id string, merchant_id string, amount double, "
        "currency string, channel string, device string, age_band string, gender string, region string, "
        "merchant_category string, merchant_country string, _source_file string, _ingest_run_id string, _row_hash bigint, "
        "_supersedes_ds date")


def _silver(spark, rows):
    ts = dt.datetime(2026, 10, 1, 10)
    full = [(i, ts, "c1-0", "c1", "m1", amt, "GBP", ch, "terminal", "26-35", g, "north", "grocery", "GB", "f", "r", 1, None)
            for i, amt, ch, g in rows]
    return spark.createDataFrame(full, COLS).withColumn("ds", F.to_date(F.lit("2026-10-01")))


def _run(spark, cards, settings, rows):
    ctx = context("validate", cards, settings, "2026-10-01")
    delta_io.replace_partitions(_silver(spark, rows), ctx.table("staged_transactions"), ctx.ds, ctx.ds)
    chargebacks = spark.createDataFrame([], "txn_id string, reported_at timestamp, reason_code string, _source_file string, "
                                            "_ingest_run_id string, _row_hash bigint, _supersedes_ds date, ds date")
    delta_io.replace_partitions(chargebacks, ctx.table("staged_chargebacks"), ctx.ds, ctx.ds)
    return ctx


def test_clean_partition_passes_and_stores_result(spark, cards, settings):
    ctx = _run(spark, cards, settings, [("t1", 10.0, "chip", "F"), ("t2", 12.0, "online", "M")])
    validate.run(ctx)
    res = json.loads((ctx.run_dir / "validation" / "silver_transactions.json").read_text())
    assert res["success"] and res["delta_version"] == 0 and len(res["checks"]) == 18  # 13 from the spec, 5 from the file
    assert ctx.counts["data_docs"].endswith("index.html")
    published = spark.read.format("delta").load(ctx.table("silver_transactions"))
    assert sorted(r["txn_id"] for r in published.collect()) == ["t1", "t2"] and "_supersedes_ds" not in published.columns


def test_critical_failure_names_table_expectation_and_column_and_leaves_silver_as_it_was(spark, cards, settings):
    ctx = _run(spark, cards, settings, [("t0", 10.0, "chip", "F")])
    validate.run(ctx)  # a clean day: published
    silver = ctx.table("silver_transactions")
    before = delta_io.latest_version(spark, silver)
    assert [r["txn_id"] for r in spark.read.format("delta").load(silver).collect()] == ["t0"]
    ctx = _run(spark, cards, settings, [("t1", 10.0, "chip", "F"), ("t1", 12.0, "online", "M")])
    with pytest.raises(ValidationFailed, match=r"nothing published to silver: silver_transactions: "
                                               r"expect_column_values_to_be_unique on column 'txn_id' failed \(unexpected_count=2"):
        validate.run(ctx)
    res = json.loads((ctx.run_dir / "validation" / "silver_transactions.json").read_text())
    assert not res["success"] and [c["column"] for c in res["failed_critical"]] == ["txn_id"]
    assert delta_io.latest_version(spark, silver) == before  # not a single commit
    assert [r["txn_id"] for r in spark.read.format("delta").load(silver).collect()] == ["t0"]


def test_warning_is_recorded_and_the_run_goes_on(spark, cards, settings, capsys):
    ctx = _run(spark, cards, settings, [(f"t{i}", 10.0, "chip", None) for i in range(3)])
    validate.run(ctx)
    res = json.loads((ctx.run_dir / "validation" / "silver_transactions.json").read_text())
    assert res["success"] and [c["column"] for c in res["failed_warning"]] == ["gender"]
    assert "validate WARNING silver_transactions: expect_column_values_to_not_be_null on column 'gender'" in capsys.readouterr().out


def test_suites_are_the_spec_rules_plus_the_files(cards, adult):
    for spec in (cards, adult):
        for source in spec.sources.values():
            suite, path = validate.build_suite(spec, source)
            extra = json.loads(path.read_text())["expectations"]
            assert len(suite.expectations) == len(validate.spec_expectations(source)) + len(extra)
    by_rule = {(e["type"], e["kwargs"].get("column")): e for e in validate.spec_expectations(cards.sources["transactions"])}
    assert by_rule[("expect_column_values_to_be_between", "amount")]["kwargs"] == {"column": "amount", "min_value": 0, "max_value": 100000}
    assert by_rule[("expect_column_values_to_be_in_set", "channel")]["meta"]["from"] == "spec: sources.transactions.columns.channel"
    assert ("expect_column_values_to_not_be_null", "device") not in by_rule  # nullable in the spec
    assert "merchant_category" in by_rule[("expect_table_columns_to_match_set", None)]["kwargs"]["column_set"]  # enrichment
    assert ("expect_table_row_count_to_be_between", None) not in {  # a label feed may be empty
        (e["type"], e["kwargs"].get("column")) for e in validate.spec_expectations(cards.sources["chargebacks"])}


def test_a_spec_without_a_suite_file_is_validated_on_its_own_rules_and_a_file_rule_replaces_a_spec_one(cards, tmp_path,
                                                                                                        monkeypatch):
    import dataclasses
    src = cards.sources["transactions"]
    spec = dataclasses.replace(cards, expectations="nofile")
    suite, path = validate.build_suite(spec, src, {"channel": 0.9})
    assert path is None and len(suite.expectations) == 13 and suite.name == "nofile_silver_transactions"
    kwargs = [e.configuration.kwargs for e in suite.expectations]
    assert [k.get("mostly") for k in kwargs if k.get("column") == "channel"] == [0.9, 0.9]  # not null, in set
    monkeypatch.setattr(validate, "EXPECTATIONS_DIR", tmp_path)
    (tmp_path / "nofile_silver_transactions.json").write_text(json.dumps({"name": "x", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "severity": "warning",
         "kwargs": {"column": "channel", "value_set": ["chip"], "mostly": 0.5}}]}))
    suite, path = validate.build_suite(spec, src)
    [channel] = [e for e in suite.expectations if e.expectation_type == "expect_column_values_to_be_in_set"]
    assert path.name == "nofile_silver_transactions.json" and len(suite.expectations) == 13
    assert channel.configuration.kwargs["value_set"] == ["chip"] and str(channel.severity).lower().endswith("warning")


def test_a_day_failing_a_critical_expectation_never_reaches_silver_nor_later_days_features(spark, cards, settings, tmp_path,
                                                                                          monkeypatch):
    """The spec lets any channel through ETL (its rule was dropped), the suite file does not (a critical rule
    of its own): day 2's rows are staged, fail the audit and stay out of silver; day 3's features count day
    1's events only."""
    import dataclasses
    from pathlib import Path

    from jobs import etl, features
    from tests.helpers import TX_HEADER, tx_folder, write_cards_dimensions, write_csv
    src = cards.sources["transactions"]
    loose = dataclasses.replace(cards, sources={**cards.sources, "transactions": dataclasses.replace(
        src, columns=tuple(dataclasses.replace(c, values=None) if c.name == "channel" else c for c in src.columns))})
    monkeypatch.setattr(validate, "EXPECTATIONS_DIR", tmp_path)
    (tmp_path / "cards_silver_transactions.json").write_text(json.dumps({"name": "cards_silver_transactions", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "severity": "critical",
         "kwargs": {"column": "channel", "value_set": ["chip", "contactless", "swipe", "online"]}}]}))
    landing = Path(settings.landing)
    write_cards_dimensions(landing)
    tx = lambda key, day, channel="chip": [key, f"{day} 10:00:00", "c1-0", "c1", "m1", "5.00", "GBP", channel, "terminal"]  # noqa: E731
    for day, rows in (("2026-10-01", [tx("a", "2026-10-01")]), ("2026-10-02", [tx("b", "2026-10-02", "teleport")]),
                      ("2026-10-03", [tx("c", "2026-10-03")])):
        write_csv(tx_folder(landing, day), TX_HEADER, rows)
    silver = f"{settings.lake}/cards/silver_transactions"
    etl.run(context("etl", loose, settings, "2026-10-01"))
    validate.run(context("validate", loose, settings, "2026-10-01"))
    before = delta_io.latest_version(spark, silver)
    etl.run(context("etl", loose, settings, "2026-10-02"))
    with pytest.raises(ValidationFailed, match=r"silver_transactions: expect_column_values_to_be_in_set on column 'channel'"):
        validate.run(context("validate", loose, settings, "2026-10-02"))
    assert delta_io.latest_version(spark, silver) == before
    etl.run(context("etl", loose, settings, "2026-10-03"))
    validate.run(context("validate", loose, settings, "2026-10-03"))
    assert sorted(r["txn_id"] for r in spark.read.format("delta").load(silver).collect()) == ["a", "c"]
    events = spark.read.format("delta").load(silver)
    [day3] = features.compute_features(events, loose, dt.date(2026, 10, 3), dt.date(2026, 10, 3)).collect()
    assert (day3["txn_id"], day3["card_txn_count_30d"]) == ("c", 1.0)  # a only: b never reached silver
