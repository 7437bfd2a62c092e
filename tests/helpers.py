"""Helpers for tests: tiny landing zones and step contexts."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from pathlib import Path

from jobs.common.cli import StepContext
from jobs.common.config import DatasetSpec, Settings

TX_HEADER = ["txn_id", "event_ts", "card_id", "customer_id", "merchant_id", "amount", "currency", "channel", "device"]


def write_csv(folder: Path, header: list[str], rows: list[list[str]], name: str = "part-00000.csv",
              bom: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def write_cards_dimensions(landing: Path) -> None:
    write_csv(landing / "cards", ["customer_id", "age_band", "gender", "region"],
              [["c1", "26-35", "F", "north"], ["c2", "65+", "M", "east"]], name="customers.csv")
    write_csv(landing / "cards", ["merchant_id", "merchant_category", "merchant_country"],
              [["m1", "grocery", "GB"], ["m2", "electronics", "US"]], name="merchants.csv")


def tx_folder(landing: Path, ds: str) -> Path:
    return landing / "cards" / "transactions" / f"ds={ds}"


def context(step: str, spec: DatasetSpec, settings: Settings, ds: str, start_ds: str | None = None,
            params: dict | None = None) -> StepContext:
    d = dt.date.fromisoformat(ds)
    return StepContext(step=step, ds=d, start_ds=dt.date.fromisoformat(start_ds) if start_ds else d, dataset=spec,
                       settings=settings, params=params or {}, run_id="test-run")


def write_training_set(spark, spec: DatasetSpec, n: int, path: str, ds: dt.date) -> None:
    """A ``training_set`` Delta table of ``n`` synthetic rows for cutoff ``ds`` (~80% train, 10% valid, 10%
    holdout; a learnable label), in the layout the features step writes."""
    import numpy as np
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.features import attr_col
    rng = np.random.default_rng(0)
    names = spec.features.names
    x = rng.normal(size=(n, len(names)))
    cats = [i for i, nm in enumerate(names) if nm in spec.features.categorical]
    x[:, cats] = rng.integers(0, 3, size=(n, len(cats)))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=1.0, size=n) > 1.2).astype(int)
    split = np.where(rng.random(n) < 0.8, "train", np.where(rng.random(n) < 0.5, "valid", "holdout"))
    rows = [(f"t{i}", *map(float, x[i]), int(y[i]), 1.0, str(split[i])) for i in range(n)]
    cols = ", ".join(f"`{c}` double" for c in names)
    df = (spark.createDataFrame(rows, f"txn_id string, {cols}, is_fraud int, weight double, split string")
          .withColumn("label_status", F.lit("known")).withColumn("cutoff_ds", F.lit(ds)))
    for i, a in enumerate(dict.fromkeys([*spec.sensitive, *spec.slices])):  # the slice columns features keeps
        df = df.withColumn(attr_col(a), F.concat(F.lit(f"{a}-"), (F.abs(F.hash("txn_id", F.lit(i))) % 3).cast("string")))
    for c in spec.features.categorical:
        df = df.withColumn(c, F.col(c).cast("int"))
    delta_io.replace_partitions(df, path, ds, ds, col="cutoff_ds")


def derived_cards_spec(folder: Path, name: str, start: dt.date, days: int, schedule: dict | None = None) -> Path:
    """A dataset spec like cards (same sources, features and GX suites) under another name, landing path and
    history, written as ``folder/<name>.yaml`` (point TRAINYARD_DATASETS_DIR at ``folder``)."""
    import yaml

    from jobs.common.config import REPO_ROOT
    doc = yaml.safe_load((REPO_ROOT / "conf" / "datasets" / "cards.yaml").read_text())
    doc.update(name=name, expectations="cards", origin={**doc["origin"], "start": start.isoformat(), "days": days})
    for source in doc["sources"].values():
        source["path"] = source["path"].replace("cards/", f"{name}/", 1)
        for e in source.get("enrich", []):
            e["path"] = e["path"].replace("cards/", f"{name}/", 1)
    if schedule:
        doc["schedule"] = schedule
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def small_training_set(spark, cards: DatasetSpec, path: str):
    """A small training set as the features step writes it: Delta, partitioned by cutoff; labels missing and
    weights missing on some rows, features missing, splits the train step leaves out, integer labels, an
    integer feature (the classifier passes integral features on uncast; the worker makes them float32)."""
    import random
    rng = random.Random(3)
    names = cards.features.names
    rows = []
    for i in range(600):
        feats = [None if rng.random() < 0.05 else float(rng.randrange(4)) if n in cards.features.categorical
                 else rng.gauss(0, 1) for n in names]  # categoricals are integer codes
        label = None if i % 97 == 0 else int(feats[0] is not None and feats[0] > 0.3)
        split = ["train", "train", "train", "valid", "holdout", None][i % 6]
        rows.append((f"t{i}", *feats, label, None if i % 7 == 0 else 0.5 + (i % 3), split, "2026-10-0" + str(1 + i % 2)))
    rows = [(r[0], r[1], None if r[2] is None else int(r[2] * 2**40), *r[3:]) for r in rows]
    cols = ", ".join(f"`{n}` {'bigint' if i == 1 else 'double'}" for i, n in enumerate(names))
    (spark.createDataFrame(rows, f"txn_id string, {cols}, is_fraud int, weight double, split string, cutoff_ds string")
     .write.format("delta").partitionBy("cutoff_ds").save(path))
    from pyspark.sql import functions as F
    return spark.read.format("delta").load(path).where(F.col("cutoff_ds") == "2026-10-02")


def stop_processes(procs: list[subprocess.Popen], group: bool = False) -> None:
    """Stop the server processes a test started, by pid: SIGTERM to each still running (to its whole process
    group with ``group``, for a leader started with ``start_new_session``), then SIGKILL what has not ended
    within 30 s."""
    kill = os.killpg if group else os.kill
    for p in procs:
        if group or p.poll() is None:
            kill(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill(p.pid, signal.SIGKILL)
            p.wait()


def run_cli(step: str, *args: str, env: dict[str, str] | None = None):
    """``python -m jobs.<step> ARGS`` run in this process, on the tests' shared Spark session (no JVM to start):
    what the command line would give, ``returncode``, ``stdout`` and ``stderr``."""
    import contextlib
    import importlib
    import io
    from types import SimpleNamespace

    import pytest
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:  # left by an in-process dag.test()
            mp.delenv(k)
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                importlib.import_module(f"jobs.{step}").main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
