"""The one place a SparkSession is built: Delta enabled, Python workers on this interpreter."""
from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import zipfile
import zipimport
from pathlib import Path

from jobs.common import jvm_cds
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
    if settings.spark_master.startswith("local"):  # one process: its RPC and block manager listen on loopback only
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
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
    drop_jars_without_python(spark.sparkContext)
    ship_code(spark.sparkContext)
    return spark


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


@functools.lru_cache(maxsize=None)  # a reused session asks again for the jars it kept: read each once
def _has_python(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as jar:
            return any(name.endswith((".py", ".pyc")) for name in jar.namelist())
    except (OSError, zipfile.BadZipFile):
        return True  # cannot tell: leave it where spark-submit put it


def drop_jars_without_python(sc) -> list[str]:
    """Take the jars that hold no Python code off the Python path; returns their names.

    spark-submit puts every jar that ``spark.jars.packages`` resolves on the Python path too (the driver's
    ``sys.path`` and the includes each Python worker puts on its own), ahead of site-packages, in case a
    jar carries Python code. delta-spark's does (its ``delta`` package, as pip installs it); its 32
    dependencies do not, yet every Python process reads all their zip directories on its first import not
    found before them on the path: about 53k entries (hadoop-client-runtime alone 19.6k). That was 56 MB in
    the training worker, 27 MB in the driver and ~0.8 s of a fresh worker's first job (bench/RESULTS.md).
    Jars with a Python file stay."""
    from pyspark import SparkFiles
    includes = getattr(sc, "_python_includes", None)
    if not includes:
        return []
    root = SparkFiles.getRootDirectory()
    dropped = [name for name in includes if name.endswith(".jar") and not _has_python(os.path.join(root, name))]
    if not dropped:
        return []
    sc._python_includes = [name for name in includes if name not in dropped]
    paths = {os.path.join(root, name) for name in dropped}
    sys.path[:] = [p for p in sys.path if p not in paths]
    for p in paths:
        sys.path_importer_cache.pop(p, None)
        zipimport._zip_directory_cache.pop(p, None)  # a directory already read, should an import have got there
    return dropped


def bounded_sample(df, cap: int, seed: int, n: int | None = None):
    """A seeded sample of at most ``cap`` rows of ``df`` (all of it when it is no larger); ``n``: its row
    count when the caller knows it already."""
    n = df.count() if n is None else n
    if n <= cap:
        return df
    return df.sample(fraction=min(1.0, cap * 1.05 / n), seed=seed).limit(cap)
