"""The shared session: the jars that spark.jars.packages resolves stay off its Python path unless they carry
Python code, on the driver and in the Python workers; a local session listens on loopback only."""
from __future__ import annotations

import os
import sys
import zipfile

from jobs.common.spark import drop_jars_without_python


def _worker_path(_):
    import sys
    return list(sys.path)


def test_only_jars_with_python_code_are_on_the_python_path(spark):
    from pyspark import SparkFiles
    root = SparkFiles.getRootDirectory()
    shipped = {os.path.join(root, n) for n in os.listdir(root) if n.endswith(".jar")}
    with_python = {j for j in shipped if any(n.endswith(".py") for n in zipfile.ZipFile(j).namelist())}
    assert len(shipped) > 10 and [os.path.basename(j) for j in with_python] == ["io.delta_delta-spark_4.2_2.13-4.4.0.jar"]

    assert shipped & set(sys.path) == with_python
    worker = spark.sparkContext.parallelize([0], 1).map(_worker_path).collect()[0]
    assert shipped & set(worker) == with_python
    assert drop_jars_without_python(spark.sparkContext) == []  # idempotent: the session is built once, reused often


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
