"""The one place a SparkSession is built: Delta enabled, Python workers on this interpreter."""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from jobs.common import jars, jvm_cds
from jobs.common.config import Settings


def spark_conf(settings: Settings, app_name: str) -> dict[str, str]:
    conf = {
        "spark.app.name": f"trainyard-{app_name}",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "static",
        "spark.sql.legacy.parquet.nanosAsLong": "true",  # pandas writes ns timestamps; etl converts them
    }
    if settings.spark_master.startswith("local"):  # one process: its RPC and block manager listen on loopback only
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    if any(p.startswith("s3") for p in (settings.landing, settings.lake)):
        conf.update(s3a_conf())
    conf.update(settings.spark_conf)
    # the conf's packages by path, resolved once into state/jars (common.jars), before any jars the conf names
    paths = jars.resolve(settings) + [p for p in settings.spark_conf.get("spark.jars", "").split(",") if p]
    conf.pop("spark.jars.excludes", None)  # applied by that resolution
    if paths:
        conf["spark.jars"] = ",".join(paths)
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
    # Spark's Python workers must import what the driver imports: point them at this interpreter, or at the
    # one the conf names for the executors (spark.pyspark.python: the same path on every worker host)
    conf = spark_conf(settings, app_name)
    if conf.get("spark.pyspark.python"):
        os.environ["PYSPARK_PYTHON"] = conf["spark.pyspark.python"]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    java_options = jvm_cds.java_options(conf)  # the driver JVM starts from the class-data archive if built
    if java_options:
        conf[jvm_cds.OPTION] = java_options
    builder = SparkSession.builder.master(settings.spark_master)
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    ship_code(spark.sparkContext)
    if os.environ.get("TRAINYARD_PROGRESS", "on") != "off" and not hasattr(spark.sparkContext, "_trainyard_progress"):
        spark.sparkContext._trainyard_progress = report_progress(spark.sparkContext, app_name)  # one per session
    return spark


def concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent Spark actions from one driver thread each and return their results in order; the
    first exception is raised. Spark schedules the jobs of concurrent threads side by side, so while one
    action's plan is built, its Delta log read or its result handled on the driver (one core), the tasks
    of another use the rest: short steps spend much of their time there."""
    if len(calls) < 2:
        return [c() for c in calls]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="trainyard-action") as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def report_progress(sc, label: str, after: float = 10.0, every: float = 10.0) -> threading.Thread:
    """A daemon thread that shows a long Spark stage is moving: once a stage has run ``after`` seconds, one
    line at most every ``every`` seconds with its finished and total tasks (Spark's own progress bar is off:
    it redraws a line many times a second, which a log file keeps as a flood)."""
    tracker = sc.statusTracker()

    def loop() -> None:
        seen: dict[int, float] = {}
        last = 0.0
        while sc._jsc is not None:
            time.sleep(1.0)
            try:
                stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
            except Exception:  # the session stopped under us
                return
            now = time.monotonic()
            running = [s for s in stages if s is not None and now - seen.setdefault(s.stageId, now) >= after]
            if running and now - last >= every:
                last = now
                print(f"{label}: " + "; ".join(f"Spark stage {s.stageId} ({s.name.split(' at ')[0]}) "
                                               f"{s.numCompletedTasks}/{s.numTasks} tasks" for s in running[:3]), flush=True)

    thread = threading.Thread(target=loop, name="trainyard-progress", daemon=True)
    thread.start()
    return thread


def package_archive(directory: Path | None = None) -> Path:
    """A zip of this package's modules (``jobs/**.py``, importable from the zip as it is), named by the
    hash of their paths and contents, so each version of the code is written once and never overwritten
    while an executor fetches it."""
    import jobs
    root = Path(jobs.__file__).resolve().parent
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root.parent).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    out = Path(directory or Path(tempfile.gettempdir()) / "trainyard-dist") / f"trainyard-{digest.hexdigest()[:16]}.zip"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.relative_to(root.parent).as_posix())
        os.replace(tmp, out)
    return out


def ship_code(sc) -> str | None:
    """On a cluster, send this package to the executors' Python workers (``SparkContext.addPyFile``: the
    zip goes on their path before any task runs there); returns its name. The spark engine's fit runs this
    package's functions in its barrier tasks (``common.xgb_spark``), and executors on other hosts have only
    the interpreter and the libraries (``spark.pyspark.python``), not the repository. A local master's
    workers import the package from the driver's own environment: nothing to send."""
    if sc.master.startswith("local"):
        return None
    archive = package_archive()
    if archive.name not in (getattr(sc, "_python_includes", None) or []):
        sc.addPyFile(str(archive))
    return archive.name


def bounded_sample(df, cap: int, seed: int, n: int | None = None):
    """A seeded sample of at most ``cap`` rows of ``df`` (all of it when it is no larger); ``n``: its row
    count when the caller knows it already."""
    n = df.count() if n is None else n
    if n <= cap:
        return df
    return df.sample(fraction=min(1.0, cap * 1.05 / n), seed=seed).limit(cap)
