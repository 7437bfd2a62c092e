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
    conf.update(settings.spark_conf)
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
