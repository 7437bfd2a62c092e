"""Shared fixtures: one local SparkSession with Delta for the whole session (per pytest-xdist worker),
temporary storage roots, and helpers that write tiny landing files. Airflow's environment is set here,
before anything imports it."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / "state" / "test"
# the tests' own Airflow metadata database, one per pytest-xdist worker (`make test` runs two): SQLite takes
# one writer at a time, and two workers' dag.test() runs would wait on each other's locks
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ["AIRFLOW_HOME"] = str(STATE / f"airflow-{WORKER}")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
# Workaround (pyspark 4.2, pyspark/sql/connect/utils.py check_dependencies): importing pyspark.sql.connect (GX
# does) from a __main__ with neither __spec__ nor __file__ is taken for a doctest run and exits the process
# when Spark Connect's optional packages are absent. A pytest-xdist worker's __main__ is such a module; naming
# a file for it keeps pyspark's check from firing there (tests/unit/test_validate.py imports GX under xdist).
# Checked for pyspark 4.x only: on another major version, look again (the GX tests under xdist show it).
import pyspark  # noqa: E402  (no JVM: the module only)

_main = sys.modules["__main__"]
if (pyspark.__version__.startswith("4.") and os.environ.get("PYTEST_XDIST_WORKER")
        and getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__")):
    _main.__file__ = "<pytest-xdist worker>"

from jobs.common.config import DatasetSpec, Settings  # noqa: E402

SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.ui.enabled": "false",
              "spark.ui.showConsoleProgress": "false", "spark.databricks.delta.snapshotPartitions": "1",
              "spark.driver.memory": "2g", "spark.sql.session.timeZone": "UTC",
              "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "4",
              # as conf/local.yaml: many short JVMs on tiny data, where the C2 compiler's CPU never pays back
              # (an etl step on 2,000 rows: 80 -> 50-63 s of JVM CPU), with the tiered default's code cache
              "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"}


def write_conf(root: Path, landing: Path | None = None, master: str = "local[2]") -> Path:
    """An environment settings file whose storage roots all live under ``root``."""
    doc = {"spark": {"master": master, "packages": ["io.delta:delta-spark_4.2_2.13:4.4.0"], "conf": SPARK_CONF},
           "storage": {"landing": str(landing or root / "landing"), "lake": str(root / "lake"), "runs": str(root / "runs"),
                       "gx": str(root / "gx")},
           "registry": {"uri": str(root / "registry")}}
    path = root / "conf.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.common.spark import get_spark
    settings = Settings.load(write_conf(tmp_path_factory.mktemp("spark")))
    s = get_spark(settings, "tests")
    yield s
    s.stop()
    logging.getLogger("py4j").setLevel(logging.WARNING)  # no "closing connection" lines after pytest closes its streams


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings.load(write_conf(tmp_path))


@pytest.fixture(scope="session")
def cards() -> DatasetSpec:
    return DatasetSpec.load("cards")


@pytest.fixture(scope="session")
def adult() -> DatasetSpec:
    return DatasetSpec.load("adult")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server process on loopback (moto's standalone server) with two buckets; yields
    the AWS environment that points boto3 and s3a at it."""
    import socket
    import subprocess
    import time

    import boto3
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "TRAINYARD_S3_BUCKET": "trainyard-landing"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    for bucket in ("trainyard-landing", "trainyard-registry"):
        s3.create_bucket(Bucket=bucket)
    yield env
    proc.terminate()
    proc.wait(timeout=10)
