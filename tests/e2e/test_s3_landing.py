"""The landing zone on S3: a real S3-compatible server process (moto's standalone server) on loopback,
files uploaded with boto3, and the etl CLI reading them through Spark's s3a connector (jars from Maven
Central, conf/s3.yaml's package list), writing Delta tables locally. No in-process patching."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
import yaml

from jobs import synth
from tests.conftest import REPO, write_conf


def test_etl_reads_landing_from_s3(s3_server, tmp_path, spark):
    import boto3
    local = tmp_path / "local"
    synth.generate(synth.SynthConfig(start=dt.date(2026, 10, 1), days=2, rows_per_day=400, seed=9), local / "cards")
    s3 = boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    for f in sorted(local.rglob("*.csv")):
        s3.upload_file(str(f), "trainyard-landing", f"landing/{f.relative_to(local).as_posix()}")

    s3conf = yaml.safe_load((REPO / "conf" / "s3.yaml").read_text())
    conf = write_conf(tmp_path / "run", landing="s3a://${TRAINYARD_S3_BUCKET}/landing", master="local[2]")
    doc = yaml.safe_load(conf.read_text())
    doc["spark"]["packages"] = s3conf["spark"]["packages"]
    doc["spark"]["conf"]["spark.jars.excludes"] = s3conf["spark"]["conf"]["spark.jars.excludes"]
    conf.write_text(yaml.safe_dump(doc))
    env = {**os.environ, **s3_server}
    out = subprocess.run([sys.executable, "-m", "jobs.etl", "--ds", "2026-10-02", "--start-ds", "2026-10-01", "--conf", str(conf)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    lake = tmp_path / "run" / "lake" / "cards"
    silver = spark.read.format("delta").load(str(lake / "staged_transactions"))  # etl stages; validate publishes
    ledger = spark.read.format("delta").load(str(lake / "etl_ledger")).where("source = 'transactions'").collect()
    assert len(ledger) == 2 and all(r["balanced"] for r in ledger)
    assert silver.count() == sum(r["rows_silver"] for r in ledger) > 700
    files = {r["_source_file"] for r in silver.select("_source_file").distinct().collect()}
    assert files and all(f.startswith("s3a://trainyard-landing/landing/cards/transactions/ds=2026-10-0") for f in files)
    assert silver.where("merchant_category IS NOT NULL").count() > 0.9 * silver.count()  # dimensions read from S3 too


def test_missing_s3_landing_day_is_a_clear_error(s3_server, tmp_path):
    os.environ.update(s3_server)
    try:
        from jobs.common.config import DatasetSpec
        from jobs.common.errors import DataError
        from jobs.common.landing import list_source_files
        src = DatasetSpec.load("cards").sources["transactions"]
        with pytest.raises(DataError, match=r"no landing folder for ds=2026-11-01 at s3a://trainyard-landing/landing/cards/transactions/ds=2026-11-01"):
            list_source_files("s3a://trainyard-landing/landing", src, dt.date(2026, 11, 1), dt.date(2026, 11, 1))
    finally:
        for k in s3_server:
            os.environ.pop(k, None)
