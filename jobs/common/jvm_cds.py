"""A class-data-sharing archive for the Spark driver JVM: each step starts warm instead of cold.

Every step runs in a fresh process with a fresh JVM, and on small data that JVM spends most of its CPU
loading, verifying and JIT-compiling Spark's and Delta's ~28k classes, not doing the work (measured:
an etl step on 2,000 rows, 80 s of JVM CPU of which 28 s went to the JIT compilers). A dynamic AppCDS
archive (JDK 13+) holds those classes already parsed and verified, memory-mapped and shared between the JVMs
that use it.

``python -m jobs.common.jvm_cds`` (``make jvm``; ``make test`` runs it first, ``make run`` in the background after
a run that found none: it pays off from the second run, bench/RESULTS.md) builds it once: it starts Spark with
``-XX:ArchiveClassesAtExit`` on a temporary file, runs a small workload touching what the steps touch (Delta
write, replaceWhere, merge and read, Parquet, windows, joins, Arrow to and from pandas, a barrier stage as
xgboost.spark uses), stops the JVM, waits for it to write the archive and moves it into place atomically.
:func:`java_options` then adds ``-XX:SharedArchiveFile`` to every driver JVM whose class path matches.

The archive is keyed on what the JVM checks it against (the JVM build, Spark's install and the extra jars);
a different key is a different file, so a changed venv or package list never meets a stale archive: it
runs without one (correct, just slower) until ``make jvm`` builds the new one. A JVM that finds the file
unusable all the same warns once and runs without it. ``TRAINYARD_JVM_CDS=off`` turns it off.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jobs.common.config import REPO_ROOT

ARCHIVE_DIR = Path(os.environ.get("TRAINYARD_JVM_CDS_DIR", str(REPO_ROOT / "state" / "jvm")))
OPTION = "spark.driver.extraJavaOptions"
# what puts classes on the driver's class path besides Spark's own jars
CLASS_PATH_CONFS = ("spark.jars.packages", "spark.jars", "spark.driver.extraClassPath", "spark.jars.repositories")


def enabled() -> bool:
    return os.environ.get("TRAINYARD_JVM_CDS", "on").lower() not in ("0", "off", "false", "no")


def java_binary() -> Path | None:
    """The java that spark-class starts: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(os.path.realpath(found)) if found and os.path.exists(found) else None


def archive_path(conf: dict[str, str]) -> Path | None:
    """Where the archive for a driver started with ``conf`` lives; None when no java is found."""
    import pyspark
    java = java_binary()
    if java is None:
        return None
    libjvm = java.parent.parent / "lib" / "server" / "libjvm.so"
    jvm_id = libjvm.stat() if libjvm.exists() else java.stat()
    parts = [str(java), str(jvm_id.st_size), str(int(jvm_id.st_mtime)), pyspark.__version__,
             os.path.realpath(os.path.dirname(pyspark.__file__))]
    parts += [f"{k}={conf.get(k, '')}" for k in CLASS_PATH_CONFS]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return ARCHIVE_DIR / f"spark-{key}.jsa"


def java_options(conf: dict[str, str]) -> str | None:
    """The driver's Java options with the archive added, or None when there is none to use (off, not
    built yet, or the options already name an archive)."""
    current = conf.get(OPTION, "")
    if not enabled() or "SharedArchiveFile" in current or "ArchiveClassesAtExit" in current:
        return None
    path = archive_path(conf)
    if path is None or not path.is_file():
        return None
    return f"{current} -XX:SharedArchiveFile={path}".strip()


def _workload(spark, root: str) -> None:
    """Touch the classes the steps load: Delta (create, replaceWhere, merge, read, history), Parquet,
    aggregation, windows, joins, Arrow both ways, a pandas UDF and a barrier stage."""
    import pandas as pd
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pdf = pd.DataFrame({"id": range(200), "ds": ["2026-01-01", "2026-01-02"] * 100,
                        "x": [float(i) for i in range(200)], "ts": pd.Timestamp("2026-01-01")})
    pdf.to_parquet(f"{root}/in.parquet")
    df = spark.read.parquet(f"{root}/in.parquet").withColumn("ts", F.col("ts").cast("timestamp"))
    df = df.withColumn("h", F.xxhash64("id", "x")).withColumn("y", (F.col("id") % 2).cast("int"))
    table = f"{root}/table"
    df.write.format("delta").partitionBy("ds").mode("overwrite").save(table)
    (df.where("ds = '2026-01-01'").write.format("delta").mode("overwrite")
     .option("replaceWhere", "ds = '2026-01-01'").option("mergeSchema", "true").save(table))
    (DeltaTable.forPath(spark, table).alias("t").merge(df.alias("s"), "t.id = s.id")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    DeltaTable.forPath(spark, table).history().collect()
    back = spark.read.format("delta").load(table)
    w = Window.partitionBy("y").orderBy("ts", "id").rowsBetween(-3, 0)
    agg = back.withColumn("m", F.avg("x").over(w)).groupBy("ds").agg(F.count("*"), F.sum("x"), F.max("m"))
    agg.join(back, "ds", "left").where(F.col("x") > 10).toPandas()
    spark.createDataFrame(pdf.drop(columns="ts")).mapInPandas(lambda it: it, "id long, ds string, x double").count()
    back.select(F.array("x", "id").alias("features"), "y").repartition(2).rdd.barrier().mapPartitions(
        lambda it: [sum(1 for _ in it)]).collect()


def build(conf: dict[str, str], master: str = "local[2]") -> Path:
    """Build the archive for ``conf`` (see the module docstring); returns its path."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    target = archive_path(conf)
    if target is None:
        raise RuntimeError("no java found: set JAVA_HOME or put java on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    builder = SparkSession.builder.master(master)
    # the classes it cannot archive (signed jars, lambda forms, ...) are each a warning line: not news
    opts = f"{conf.get(OPTION, '')} -XX:ArchiveClassesAtExit={tmp} -Xlog:cds*=off".strip()
    for k, v in {**conf, OPTION: opts, "spark.ui.enabled": "false"}.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    proc = SparkContext._gateway.proc
    try:
        with tempfile.TemporaryDirectory(prefix="trainyard-cds-") as root:
            _workload(spark, root)
    finally:
        spark.stop()
        SparkContext._gateway.shutdown()  # the JVM exits on EOF on its stdin and dumps the archive as it goes
        proc.stdin.close()
        proc.wait(timeout=600)
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise RuntimeError(f"the JVM exited ({proc.returncode}) without writing {tmp}")
    os.replace(tmp, target)  # atomic: a JVM starting meanwhile sees the whole archive or none
    return target


def _building(path: Path) -> bool:
    """Whether a live process is building the archive at ``path`` now (its marker names its pid)."""
    try:
        os.kill(int(path.with_suffix(".building").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    from jobs.common.config import Settings
    from jobs.common.spark import spark_conf
    import argparse

    p = argparse.ArgumentParser(prog="python -m jobs.common.jvm_cds", description=__doc__.splitlines()[0])
    p.add_argument("--conf", default="conf/local.yaml", help="environment settings (its Spark packages)")
    p.add_argument("--force", action="store_true", help="rebuild even if the archive exists")
    p.add_argument("--check", action="store_true",
                   help="build nothing: exit 0 when the archive is there (or off, or being built), 1 when it is not")
    args = p.parse_args(argv)
    if not enabled():
        print("JVM class-data sharing is off (TRAINYARD_JVM_CDS)")
        return 0
    conf = spark_conf(Settings.load(args.conf), "cds")
    conf.pop(OPTION, None)  # the archive holds classes, not options: one archive serves every option set
    path = archive_path(conf)
    if args.check:
        return 0 if path is None or path.is_file() or _building(path) else 1
    if path is not None and path.is_file() and not args.force:
        print(f"JVM class-data archive up to date: {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
        return 0
    t0 = time.perf_counter()
    marker = path.with_suffix(".building") if path is not None else None
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    try:
        path = build(conf)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
    print(f"JVM class-data archive built in {time.perf_counter() - t0:.0f} s: {path} "
          f"({path.stat().st_size / 2**20:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
