"""Shared fixtures: one local SparkSession with Delta for the whole session, temporary storage roots, and
helpers that write tiny landing files. Airflow's environment is set here, before anything imports it."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / "state" / "test"
os.environ.setdefault("AIRFLOW_HOME", str(STATE / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable

from jobs.common.config import DatasetSpec, Settings  # noqa: E402

SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.ui.enabled": "false",
              "spark.ui.showConsoleProgress": "false", "spark.databricks.delta.snapshotPartitions": "1",
              "spark.driver.memory": "2g", "spark.sql.session.timeZone": "UTC",
              "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "4"}


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
