"""ETL on tiny landing files: every bad-input rule, deduplication (within a run and against what silver already
holds), reconciliation, idempotency, drift. ETL stages rows; validate.publish_source makes them silver's."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import etl, validate
from jobs.common.errors import DataError
from tests.helpers import TX_HEADER, context, tx_folder, write_cards_dimensions, write_csv

DS = "2026-10-01"
ROWS = [
    ["t1", "2026-10-01 10:00:00", "c1-0", "c1", "m1", "10.50", "GBP", "chip", "terminal"],           # good
    ["", "2026-10-01 10:05:00", "c1-0", "c1", "m1", "3.00", "GBP", "chip", "terminal"],              # null key
    ["t3", "01/10/2026T10:00:00", "c1-0", "c1", "m1", "3.00", "GBP", "chip", "terminal"],            # malformed ts
    ["t4", "2026-10-01 10:10:00", "c1-0", "c1", "m1", "-5.00", "GBP", "chip", "terminal"],           # negative
    ["t5", "2026-10-02 00:00:01", "c1-0", "c1", "m1", "5.00", "GBP", "chip", "terminal"],            # future
    ["t1", "2026-10-01 10:00:00", "c1-0", "c1", "m1", "10.50", "GBP", "chip", "terminal"],           # exact resend
    ["t6", "2026-10-01 11:00:00", "c2-0", "c2", "m2", "20.00", "USD", "online", "mobile"],           # first version
    ["t6", "2026-10-01 11:00:01", "c2-0", "c2", "m2", "21.00", "USD", "online", "mobile"],           # corrected: wins
    ["t7", "2026-10-01 12:00:00", "c2-0", "c2", "", "7.00", "USD", "online", "mobile"],              # no merchant
    ["t8", "2026-10-01 12:30:00", "c2-0", "c2", "m2", "7.00", "USD", "teleport", "mobile"],          # unknown channel
    ["t9", "2026-10-01 13:00:00", "c2-0", "c2", "m2", "10000000", "USD", "online", "mobile"],        # absurd amount
]
EXPECTED_REASONS = {"null_txn_id": 1, "unparseable_event_ts": 1, "below_min_amount": 1, "future_event": 1,
                    "null_merchant_id": 1, "unknown_value_channel": 1, "above_max_amount": 1}


def _source(spec, rate=1.0):
    return dataclasses.replace(spec.sources["transactions"], max_quarantine_rate=rate)


def _land(settings, rows=ROWS, header=TX_HEADER, **kw):
    landing = Path(settings.landing)
    write_cards_dimensions(landing)
    return write_csv(tx_folder(landing, DS), header, rows, **kw)


def test_every_rule_quarantines_with_reason_and_counts_reconcile(spark, cards, settings):
    _land(settings)
    ctx = context("etl", cards, settings, DS)
    [ledger] = etl.process_source(spark, ctx, _source(cards))
    assert ledger["rows_read"] == 11
    assert ledger["rows_silver"] == 2
    assert ledger["duplicates_dropped"] == 2
    assert ledger["quarantined_by_reason"] == EXPECTED_REASONS
    assert ledger["balanced"]
    silver = spark.read.format("delta").load(ctx.table("staged_transactions"))
    got = {r["txn_id"]: (r["amount"], r["merchant_category"], r["gender"]) for r in silver.collect()}
    assert got == {"t1": (10.5, "grocery", "F"), "t6": (21.0, "electronics", "M")}  # latest event time wins
    q = spark.read.format("delta").load(ctx.table("quarantine_transactions"))
    rule = {r["reason"]: r["rule"] for r in q.collect()}
    assert rule["below_min_amount"] == "amount >= 0"
    assert rule["future_event"].startswith("event_ts < end of its landing day")
    assert all(r["_source_file"].endswith("part-00000.csv") for r in q.collect())


def test_quarantine_rate_above_limit_fails_and_stages_nothing(spark, cards, settings):
    _land(settings)
    ctx = context("etl", cards, settings, DS)
    with pytest.raises(DataError, match=r"7 of 11 rows quarantined .* > max_quarantine_rate 5.0%"):
        etl.process_source(spark, ctx, _source(cards, rate=0.05))
    assert spark.read.format("delta").load(ctx.table("quarantine_transactions")).count() == 7
    assert not Path(ctx.table("staged_transactions")).exists()


def test_rerun_replaces_partition_byte_identical(spark, cards, settings):
    _land(settings)
    ctx = context("etl", cards, settings, DS)
    hashes = []
    for _ in range(3):
        etl.process_source(spark, ctx, _source(cards))
        df = spark.read.format("delta").load(ctx.table("staged_transactions"))
        hashes.append((df.count(), sorted(r["_row_hash"] for r in df.select("_row_hash").collect())))
    assert hashes[0] == hashes[1] == hashes[2]
    assert hashes[0][0] == 2


def test_rerun_of_one_day_leaves_other_days_alone(spark, cards, settings):
    landing = Path(settings.landing)
    _land(settings)
    write_csv(tx_folder(landing, "2026-10-02"), TX_HEADER, [["u1", "2026-10-02 09:00:00", "c1-0", "c1", "m1", "1", "GBP", "chip", "terminal"]])
    both = context("etl", cards, settings, "2026-10-02", start_ds=DS)
    etl.process_source(spark, both, _source(cards))
    etl.process_source(spark, context("etl", cards, settings, "2026-10-02"), _source(cards))
    silver = spark.read.format("delta").load(both.table("staged_transactions"))
    assert {str(r["ds"]): r["count"] for r in silver.groupBy("ds").count().collect()} == {"2026-10-01": 2, "2026-10-02": 1}


@pytest.mark.parametrize("header, message", [
    ([c for c in TX_HEADER if c != "device"], r"missing column\(s\) \['device'\]"),
    (TX_HEADER + ["loyalty_tier"], r"unexpected column\(s\) \['loyalty_tier'\]"),
    ([("amount_gbp" if c == "amount" else c) for c in TX_HEADER], r"missing column\(s\) \['amount'\]; unexpected column\(s\) \['amount_gbp'\]"),
])
def test_schema_drift_names_the_column_and_file_and_writes_nothing(spark, cards, settings, header, message):
    path = _land(settings, rows=[r[: len(header)] for r in ROWS[:1]], header=header)
    ctx = context("etl", cards, settings, DS)
    with pytest.raises(DataError, match=message) as e:
        etl.process_source(spark, ctx, _source(cards))
    assert str(path) in str(e.value) and "expected columns" in str(e.value)
    assert not Path(ctx.table("bronze_transactions")).exists()


def test_retyped_column_is_quarantined_per_row_with_its_rule(spark, cards, settings):
    rows = [r[:] for r in ROWS[:1]] + [["t2", "2026-10-01 10:00:00", "c1-0", "c1", "m1", "ten pounds", "GBP", "chip", "terminal"]]
    _land(settings, rows=rows)
    [ledger] = etl.process_source(spark, context("etl", cards, settings, DS), _source(cards))
    assert ledger["quarantined_by_reason"] == {"unparseable_amount": 1}


def test_missing_landing_folder_is_a_clear_error(spark, cards, settings):
    write_cards_dimensions(Path(settings.landing))
    with pytest.raises(DataError, match=r"source 'transactions': no landing folder for ds=2026-10-01"):
        etl.process_source(spark, context("etl", cards, settings, DS), _source(cards))


def test_empty_landing_folder_is_a_clear_error(spark, cards, settings):
    tx_folder(Path(settings.landing), DS).mkdir(parents=True)
    with pytest.raises(DataError, match=r"has no files for ds=2026-10-01"):
        etl.process_source(spark, context("etl", cards, settings, DS), _source(cards))


def test_utf8_bom_header_reads_correctly(spark, cards, settings):
    _land(settings, rows=ROWS[:1], bom=True)
    [ledger] = etl.process_source(spark, context("etl", cards, settings, DS), _source(cards))
    assert (ledger["rows_read"], ledger["rows_silver"]) == (1, 1)


def test_truncated_csv_file_is_a_clear_error_naming_the_file(spark, cards, settings):
    path = _land(settings, rows=ROWS[:1])
    with path.open("a") as f:
        f.write("t2,2026-10-01 10:00:00,c1-0,c1")  # cut off mid-row, no line ending
    ctx = context("etl", cards, settings, DS)
    with pytest.raises(DataError, match=rf"{path}: file is truncated"):
        etl.process_source(spark, ctx, _source(cards))
    assert not Path(ctx.table("bronze_transactions")).exists()


def test_row_with_too_many_fields_is_quarantined_as_malformed(spark, cards, settings):
    _land(settings, rows=[ROWS[0], ROWS[6] + ["surplus"]])
    [ledger] = etl.process_source(spark, context("etl", cards, settings, DS), _source(cards))
    assert ledger["quarantined_by_reason"] == {"malformed_row": 1}
    assert ledger["balanced"]


def test_standardise_trims_and_nulls_empty_strings(spark, cards):
    src = cards.sources["transactions"]
    row = ["  t1 ", "2026-10-01 10:00:00", "c1-0", "c1", " m1", "1.0", "GBP", "chip", "   "]
    cols = TX_HEADER + [etl.CORRUPT, "_source_file", "_ingest_run_id"]
    raw = spark.createDataFrame([row + [None, "f", "r"]], ", ".join(f"{c} string" for c in cols)).withColumn("_row_hash", F.lit(1))
    raw = raw.withColumn("ds", F.to_date(F.lit(DS)))
    out = etl.standardise(raw, src).collect()[0]
    assert (out["txn_id"], out["merchant_id"], out["device"], out["_rejection"]) == ("t1", "m1", None, None)


def test_mixed_encoding_rows_are_quarantined_not_crashing(spark, cards, settings):
    path = _land(settings, rows=ROWS[:1])
    with path.open("ab") as f:
        f.write("t2,2026-10-01 10:00:00,c1-0,c1,m_café,3.00,EUR,chip,terminal\n".encode("latin-1"))
    [ledger] = etl.process_source(spark, context("etl", cards, settings, DS), _source(cards))
    assert ledger["quarantined_by_reason"] == {"invalid_encoding_merchant_id": 1}
    assert ledger["rows_silver"] == 1


def _parquet_spec(cards, fmt):
    return dataclasses.replace(_source(cards), format=fmt)


def _typed_rows():
    import pandas as pd
    return pd.DataFrame({"txn_id": ["t1", "t2", "t2"], "event_ts": pd.to_datetime(["2026-10-01 10:00:00", "2026-10-01 11:00:00", "2026-10-01 11:00:05"]),
                         "card_id": ["c1-0", "c2-0", "c2-0"], "customer_id": ["c1", "c2", "c2"], "merchant_id": ["m1", "m2", "m2"],
                         "amount": [10.5, -1.0, 7.0], "currency": ["GBP", "USD", "USD"], "channel": ["chip", "online", "online"],
                         "device": ["terminal", "mobile", "mobile"]})


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_lines_land_like_csv(spark, cards, settings, fmt):
    folder = tx_folder(Path(settings.landing), DS)
    folder.mkdir(parents=True)
    write_cards_dimensions(Path(settings.landing))
    df = _typed_rows()
    if fmt == "parquet":
        df.to_parquet(folder / "part-0.parquet", index=False)
    else:
        df.assign(event_ts=df["event_ts"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_json(folder / "part-0.json", orient="records", lines=True)
    ctx = context("etl", cards, settings, DS)
    [ledger] = etl.process_source(spark, ctx, _parquet_spec(cards, fmt))
    assert (ledger["rows_read"], ledger["rows_silver"], ledger["duplicates_dropped"]) == (3, 2, 0)
    assert ledger["quarantined_by_reason"] == {"below_min_amount": 1}
    silver = {r["txn_id"]: r for r in spark.read.format("delta").load(ctx.table("staged_transactions")).collect()}
    assert str(silver["t1"]["event_ts"]) == "2026-10-01 10:00:00" and silver["t1"]["amount"] == 10.5


def test_retyped_parquet_column_is_a_clear_error(spark, cards, settings):
    folder = tx_folder(Path(settings.landing), DS)
    folder.mkdir(parents=True)
    _typed_rows().astype({"amount": str}).to_parquet(folder / "part-0.parquet", index=False)
    with pytest.raises(DataError, match=r"part-0.parquet: retyped column\(s\) in source 'transactions': 'amount' is string, expected double"):
        etl.process_source(spark, context("etl", cards, settings, DS), _parquet_spec(cards, "parquet"))


def test_corrupt_parquet_is_named_and_nothing_written(spark, cards, settings):
    folder = tx_folder(Path(settings.landing), DS)
    folder.mkdir(parents=True)
    _typed_rows().to_parquet(folder / "part-0.parquet", index=False)
    (folder / "part-1.parquet").write_bytes((folder / "part-0.parquet").read_bytes()[:200])  # cut short
    ctx = context("etl", cards, settings, DS)
    with pytest.raises(DataError, match=r"part-1.parquet: not a readable Parquet file"):
        etl.process_source(spark, ctx, _parquet_spec(cards, "parquet"))
    assert not Path(ctx.table("bronze_transactions")).exists()


def test_reconcile_flags_a_write_that_lost_rows(cards):
    ledger = [{"ds": DS, "rows_read": 10, "rows_silver": 7, "rows_quarantined": 2, "duplicates_dropped": 1, "balanced": True}]
    src = cards.sources["transactions"]
    assert etl.reconcile(ledger, {"bronze": 10, "staged": 7, "quarantine": 2}, src)[0]["balanced"]
    [bad] = etl.reconcile(ledger, {"bronze": 10, "staged": 6, "quarantine": 2}, src)
    assert not bad["balanced"] and bad["mismatch"]["staged"] == (7, 6)


def test_null_and_unknown_labels_are_quarantined_with_reasons(spark, adult, settings):
    header = ["person_id", "event_ts", *adult.origin["package_files"]["columns"]]
    base = ["39", "State-gov", "77516", "Bachelors", "13", "Never-married", "Adm-clerical", "Not-in-family", "White", "Male",
            "2174", "0", "40", "United-States"]
    rows = [["r1", "2026-10-01 01:00:00", *base, ">50K"], ["r2", "2026-10-01 02:00:00", *base, ""],
            ["r3", "2026-10-01 03:00:00", *base, "maybe"], ["", "2026-10-01 04:00:00", *base, "<=50K"]]
    write_csv(Path(settings.landing) / "adult" / "census" / f"ds={DS}", header, rows)
    src = dataclasses.replace(adult.sources["census"], max_quarantine_rate=1.0)
    [ledger] = etl.process_source(spark, context("etl", adult, settings, DS), src)
    assert ledger["quarantined_by_reason"] == {"null_income": 1, "unknown_value_income": 1, "null_person_id": 1}
    assert ledger["rows_silver"] == 1
    with pytest.raises(DataError, match=r"3 of 4 rows quarantined .* by reason: \{'null_income': 1"):
        etl.process_source(spark, context("etl", adult, settings, DS), adult.sources["census"])


def _tx(key: str, ts: str, amount: str = "1.00") -> list[str]:
    return [key, ts, "c1-0", "c1", "m1", amount, "GBP", "chip", "terminal"]


def _etl_and_publish(spark, cards, settings, ds: str) -> dict:
    [ledger] = etl.process_source(spark, context("etl", cards, settings, ds), _source(cards))
    validate.publish_source(spark, context("validate", cards, settings, ds), _source(cards))
    return ledger


def _silver(spark, settings) -> dict[str, tuple[str, str, float]]:
    rows = spark.read.format("delta").load(f"{settings.lake}/cards/silver_transactions").collect()
    assert len(rows) == len({r["txn_id"] for r in rows}), "one silver row per key"
    return {r["txn_id"]: (str(r["ds"]), str(r["event_ts"]), r["amount"]) for r in rows}


def test_a_key_landing_on_two_days_keeps_one_silver_row_and_the_ledger_counts_the_other(spark, cards, settings):
    landing = Path(settings.landing)
    write_cards_dimensions(landing)
    write_csv(tx_folder(landing, "2026-10-01"), TX_HEADER, [_tx("a", "2026-10-01 10:00:00"), _tx("b", "2026-10-01 11:00:00")])
    write_csv(tx_folder(landing, "2026-10-02"), TX_HEADER, [
        _tx("a", "2026-10-01 10:00:00"),               # resent the next day: a duplicate of day 1's row
        _tx("b", "2026-10-01 11:00:01", "2.00"),        # a later event for b: replaces day 1's row
        _tx("c", "2026-10-02 09:00:00")])
    assert _etl_and_publish(spark, cards, settings, "2026-10-01")["rows_silver"] == 2
    day2 = _etl_and_publish(spark, cards, settings, "2026-10-02")
    assert (day2["rows_read"], day2["rows_silver"], day2["duplicates_dropped"]) == (3, 2, 1)
    assert (day2["duplicates_of_published"], day2["rows_superseded"], day2["balanced"]) == (1, 1, True)
    assert _silver(spark, settings) == {"a": ("2026-10-01", "2026-10-01 10:00:00", 1.0),
                                        "b": ("2026-10-02", "2026-10-01 11:00:01", 2.0),
                                        "c": ("2026-10-02", "2026-10-02 09:00:00", 1.0)}
    # reruns, in either order, change nothing: the outcome does not depend on which day ran last
    for ds in ("2026-10-02", "2026-10-01"):
        _etl_and_publish(spark, cards, settings, ds)
        assert _silver(spark, settings)["b"] == ("2026-10-02", "2026-10-01 11:00:01", 2.0), ds
        assert set(_silver(spark, settings)) == {"a", "b", "c"}


def _delay_spec(expr: str = "arr_delay > 15"):
    from jobs.common.config import DatasetSpec
    return DatasetSpec.from_dict({
        "name": "flights", "examples": "flights", "entity": "plane",
        "sources": {"flights": {"path": "flights/flights", "key": "id", "event_time": "dep_ts", "max_quarantine_rate": 1.0,
                                "columns": [{"name": "id", "type": "string", "nullable": False},
                                            {"name": "dep_ts", "type": "timestamp", "format": "yyyy-MM-dd HH:mm:ss"},
                                            {"name": "plane", "type": "string"},
                                            {"name": "arr_delay", "type": "double"}]}},
        "label": {"name": "delayed", "expr": expr}, "features": {"numeric": []}}, "conf/datasets/flights.yaml")


def test_rows_whose_label_expression_is_null_are_quarantined_as_null_label(spark, settings):
    spec = _delay_spec()
    rows = [["f1", "2026-10-01 08:00:00", "p1", "20"], ["f2", "2026-10-01 09:00:00", "p1", "3"],
            ["f3", "2026-10-01 10:00:00", "p2", ""],      # cancelled: no arrival delay, no label
            ["f4", "2026-10-01 11:00:00", "p2", "late"]]  # not a number: unparseable comes first
    write_csv(Path(settings.landing) / "flights" / "flights" / f"ds={DS}", ["id", "dep_ts", "plane", "arr_delay"], rows)
    ctx = context("etl", spec, settings, DS)
    [ledger] = etl.process_source(spark, ctx, spec.sources["flights"])
    assert ledger["quarantined_by_reason"] == {"null_label": 1, "unparseable_arr_delay": 1}
    assert ledger["rows_silver"] == 2 and ledger["balanced"]
    q = {r["id"]: (r["reason"], r["rule"]) for r in spark.read.format("delta").load(ctx.table("quarantine_flights")).collect()}
    assert q["f3"] == ("null_label", "label delayed = arr_delay > 15 is not null")


def test_a_label_expression_that_does_not_resolve_names_the_spec_and_the_columns(spark, settings):
    from jobs.common.errors import ConfigError
    write_csv(Path(settings.landing) / "flights" / "flights" / f"ds={DS}", ["id", "dep_ts", "plane", "arr_delay"],
              [["f1", "2026-10-01 08:00:00", "p1", "20"]])
    for expr, message in (("arr_delay > delay_bar", r"conf/datasets/flights.yaml: label.expr 'arr_delay > delay_bar' is not a "
                                                    r"valid Spark SQL expression over the columns \['id', 'dep_ts', 'plane', 'arr_delay'\]"),
                          ("concat(plane, arr_delay)", r"label.expr 'concat\(plane, arr_delay\)' gives string values; a binary label is a boolean")):
        spec = _delay_spec(expr)
        with pytest.raises(ConfigError, match=message):
            etl.process_source(spark, context("etl", spec, settings, DS), spec.sources["flights"])
