"""The one place a SparkSession is built: Delta enabled, Python workers on this interpreter."""
from __future__ import annotations

import os
import sys

from jobs.common.config import REPO_ROOT, Settings


def spark_conf(settings: Settings, app_name: str) -> dict[str, str]:
    conf = {
        "spark.app.name": f"trainyard-{app_name}",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # Delta's jars come from Maven Central on first use, cached in the repo's ignored state folder
        "spark.jars.ivy": os.environ.get("TRAINYARD_IVY", str(REPO_ROOT / "state" / "ivy")),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "static",
        "spark.sql.legacy.parquet.nanosAsLong": "true",  # pandas writes ns timestamps; etl converts them
    }
    if settings.spark_packages:
        conf["spark.jars.packages"] = ",".join(settings.spark_packages)
    if any(p.startswith("s3") for p in (settings.landing, settings.lake)):
        conf.update(s3a_conf())
    conf.update(settings.spark_conf)
    return conf


def s3a_conf() -> dict[str, str]:
    """s3a settings: credentials from the AWS environment variables, an S3-compatible endpoint if
    AWS_ENDPOINT_URL names one (path-style addressing then)."""
    conf = {"spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf.update({"spark.hadoop.fs.s3a.endpoint": endpoint, "spark.hadoop.fs.s3a.path.style.access": "true",
                     "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
                     "spark.hadoop.fs.s3a.endpoint.region": os.environ.get("AWS_REGION", "us-east-1")})
    return conf


def get_spark(settings: Settings, app_name: str):
    """Build (or reuse) the session. Only a step's main() and test fixtures call this."""
    # Spark's Python workers must import what the driver imports: point them at this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.spark_master)
    for k, v in spark_conf(settings, app_name).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def bounded_sample(df, cap: int, seed: int, n: int | None = None):
    """A seeded sample of at most ``cap`` rows of ``df`` (all of it when it is no larger); ``n``: its row
    count when the caller knows it already."""
    n = df.count() if n is None else n
    if n <= cap:
        return df
    return df.sample(fraction=min(1.0, cap * 1.05 / n), seed=seed).limit(cap)
