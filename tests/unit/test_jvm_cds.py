"""The driver JVM's class-data archive: keyed on what the JVM checks it against, used only when built."""
from __future__ import annotations

import pytest

from jobs.common import jvm_cds

DELTA = {"spark.jars.packages": "io.delta:delta-spark_4.2_2.13:4.4.0"}


@pytest.fixture()
def archive_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_cds, "ARCHIVE_DIR", tmp_path)
    monkeypatch.delenv("TRAINYARD_JVM_CDS", raising=False)
    return tmp_path


def test_the_key_follows_the_class_path_not_the_options(archive_dir):
    path = jvm_cds.archive_path(DELTA)
    assert path.parent == archive_dir and path.name.startswith("spark-") and path.suffix == ".jsa"
    assert jvm_cds.archive_path({**DELTA, jvm_cds.OPTION: "-Xmx1g", "spark.driver.memory": "2g"}) == path
    assert jvm_cds.archive_path({**DELTA, "spark.jars.packages": DELTA["spark.jars.packages"] + ",org.apache.hadoop:hadoop-aws:3.4.1"}) != path
    assert jvm_cds.archive_path({**DELTA, "spark.jars": "/opt/extra.jar"}) != path


def test_options_name_the_archive_only_once_it_is_built(archive_dir, monkeypatch):
    conf = {**DELTA, jvm_cds.OPTION: "-XX:TieredStopAtLevel=1"}
    assert jvm_cds.java_options(conf) is None  # not built: the JVM starts as it would without
    path = jvm_cds.archive_path(conf)
    path.write_bytes(b"x")
    assert jvm_cds.java_options(conf) == f"-XX:TieredStopAtLevel=1 -XX:SharedArchiveFile={path}"
    assert jvm_cds.java_options(DELTA) == f"-XX:SharedArchiveFile={path}"
    assert jvm_cds.java_options({**DELTA, jvm_cds.OPTION: "-XX:SharedArchiveFile=/mine.jsa"}) is None  # the user's wins
    monkeypatch.setenv("TRAINYARD_JVM_CDS", "off")
    assert jvm_cds.java_options(conf) is None


def test_the_session_jvm_starts_from_the_archive_when_make_built_it(spark, settings):
    from jobs.common.spark import spark_conf
    conf = spark_conf(settings, "tests")  # the settings the session fixture is built from, another root
    path = jvm_cds.archive_path(conf)
    if not jvm_cds.enabled() or not path.is_file():
        pytest.skip("no archive built (make test builds it)")
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={path}" in args and "-XX:TieredStopAtLevel=1" in args
