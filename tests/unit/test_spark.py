"""The shared session's Python path: the jars that spark.jars.packages resolves stay off it unless they
carry Python code, on the driver and in the Python workers."""
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
