"""The shared session: Delta's jars by path from state/jars (resolved once, never by Spark), none of them on
the Python path; the package archive a cluster gets; a local session listens on loopback only."""
from __future__ import annotations

import os
import sys
import threading
import zipfile

import pytest

from jobs.common import jars
from jobs.common.config import Settings


def _worker_path(_):
    import sys
    return list(sys.path)


def test_the_session_takes_its_jars_by_path_from_state_jars_and_keeps_them_off_the_python_path(spark, tmp_path):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.jars.packages", None) is None and conf.get("spark.jars.ivy", None) is None
    paths = conf.get("spark.jars").split(",")
    names = {os.path.basename(p) for p in paths}
    assert len(paths) > 10 and "io.delta_delta-spark_4.2_2.13-4.4.0.jar" in names
    assert all(p.startswith(str(jars.JARS_DIR)) and os.path.isfile(p) for p in paths)
    assert not any(n.startswith(("org.scala-lang_scala-library", "org.apache.spark_spark-")) for n in names)
    worker = spark.sparkContext.parallelize([0], 1).map(_worker_path).collect()[0]
    assert not [p for p in sys.path + worker if p.endswith(".jar") and (os.path.basename(p) in names or "io.delta" in p)]
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    assert spark.read.format("delta").load(str(tmp_path / "t")).count() == 3


def test_a_resolution_is_keyed_on_its_coordinates_and_excludes_and_redone_when_interrupted(tmp_path, monkeypatch):
    monkeypatch.setattr(jars, "JARS_DIR", tmp_path)
    base = Settings(spark_master="local[1]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",),
                    spark_conf={}, landing="", lake="", runs="", gx="", registry="", source="x.yaml")
    s3 = Settings(**{**base.__dict__, "spark_packages": base.spark_packages + ("org.apache.hadoop:hadoop-aws:3.5.0",),
                     "spark_conf": {"spark.jars.excludes": "software.amazon.awssdk:bundle"}})
    assert jars.folder(base) != jars.folder(s3) and jars.folder(base).parent == tmp_path
    module = jars.ivy_module(*jars.wanted(s3))
    assert 'name="hadoop-aws" rev="3.5.0"' in module and 'org="software.amazon.awssdk" module="bundle"' in module
    assert 'module="scala-library"' in module and 'module="spark-.*" matcher="regexp"' in module
    assert jars.resolved(Settings(**{**base.__dict__, "spark_packages": ()})) == []
    jars.folder(base).mkdir(parents=True)
    (jars.folder(base) / "a.jar").write_bytes(b"x")
    assert jars.resolved(base) is None  # no manifest: an interrupted resolution
    (jars.folder(base) / jars.MANIFEST).write_text("a.jar\nb.jar\n")
    assert jars.resolved(base) is None  # a jar it names is missing
    (jars.folder(base) / "b.jar").write_bytes(b"y")
    assert jars.resolved(base) == [str(jars.folder(base) / "a.jar"), str(jars.folder(base) / "b.jar")]
    bad = Settings(**{**base.__dict__, "spark_packages": ("io.delta:delta-spark",)})
    try:
        jars.wanted(bad)
    except jars.ConfigError as e:
        assert "x.yaml: spark.packages" in str(e) and "group:artifact:version" in str(e)
    else:
        raise AssertionError("a coordinate without a version was accepted")


def test_a_failed_resolution_names_the_conf_the_repository_and_its_log_and_leaves_nothing_half_done(tmp_path, monkeypatch):
    monkeypatch.setattr(jars, "JARS_DIR", tmp_path)
    monkeypatch.setattr(jars, "MAVEN_CENTRAL", "http://127.0.0.1:9/maven2/")  # nothing listens there
    s = Settings(spark_master="local[1]", spark_packages=("org.example:nothing:1.0",), spark_conf={}, landing="",
                 lake="", runs="", gx="", registry="", source="conf/x.yaml")
    try:
        jars.resolve(s)
    except jars.ConfigError as e:
        assert "conf/x.yaml" in str(e) and "127.0.0.1:9" in str(e) and ".log" in str(e)
    else:
        raise AssertionError("resolution against a closed port succeeded")
    assert jars.resolved(s) is None and not [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "cache"]


def test_the_package_archive_holds_the_code_and_imports_from_the_zip_alone(tmp_path):
    """What ``ship_code`` sends to a cluster's executors: every module of ``jobs``, importable from the zip
    by an interpreter started outside the repository; named by content, written once."""
    import subprocess
    from jobs.common.spark import package_archive, ship_code
    first = package_archive(tmp_path)
    assert package_archive(tmp_path) == first and first.name.startswith("trainyard-")
    names = zipfile.ZipFile(first).namelist()
    assert {"jobs/__init__.py", "jobs/common/__init__.py", "jobs/common/xgb_spark.py", "jobs/train.py"} <= set(names)
    code = (f"import sys; sys.path.insert(0, {str(first)!r}); import jobs.common.xgb_spark as m; "
            "print(m.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{first}/jobs/common/xgb_spark.py"
    assert ship_code(type("LocalContext", (), {"master": "local[2]"})()) is None  # a local master: nothing to send


def test_a_local_session_listens_on_loopback_only(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == conf.get("spark.driver.bindAddress") == "127.0.0.1"


def _slow(rows):
    import time
    time.sleep(3)
    return rows


def test_a_long_stage_reports_its_progress_a_few_times_never_a_flood(spark, capsys):
    from jobs.common.spark import report_progress
    thread = report_progress(spark.sparkContext, "etl", after=1.0, every=1.0)
    assert spark.sparkContext.parallelize(range(4), 2).mapPartitions(_slow).count() == 4  # one stage of ~3 s
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("etl: Spark stage")]
    assert 1 <= len(lines) <= 3 and all(x.endswith("/2 tasks") for x in lines), lines
    assert thread.daemon and thread.is_alive()


def test_independent_actions_run_side_by_side_and_return_in_order(spark):
    from jobs.common.spark import concurrently
    both = threading.Barrier(2, timeout=60)  # passed only while both actions are running at once

    def count(n: int):
        def run() -> int:
            both.wait()
            return spark.range(n).count()
        return run
    assert concurrently(count(3), count(5)) == [3, 5]

    def fails() -> int:
        raise ValueError("the second action's error")
    with pytest.raises(ValueError, match="second action"):
        concurrently(lambda: spark.range(2).count(), fails)
    assert concurrently(lambda: 1) == [1]
