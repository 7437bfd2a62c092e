"""Benchmark: distributed XGBoost on Spark (the training path of ``jobs.train``) against single-node
``xgboost`` on the same Parquet data, with peak memory.

For each size it writes N rows x F float features (a learnable, noisy binary label, ~10% positives; the last
10% of rows are the validation window) and a 200k-row test set as Parquet, then runs, alternately and
``--repeat`` times each, in a fresh process per run:

- **spark**: the train step's spark engine (``train.engine: spark``). SparkSession local[*] and the
  ``xgboost.spark`` import (not timed), then timed: read the Parquet and ``train.fit``
  (SparkXGBClassifier, which repartitions the rows into one partition per worker and streams them to the
  workers, with ``common.xgb_spark``'s two substitutions, ``validation_indicator_col``; ``num_workers``
  auto, which on one machine is one worker with every core: ``spark.task.cpus`` = cores,
  ``train.training_settings``) -> booster.
- **single**: timed: read the same Parquet with pyarrow into float32 arrays, ``xgb.QuantileDMatrix`` +
  ``xgb.train`` with ``nthread`` = cores.
- **local**: the train step's local engine (``train.engine: auto`` on one machine): ``xgb_local.read_files``
  + ``split`` + ``fit`` (``xgboost.XGBClassifier``) on the same files, every core (``run_local``).

Both: 100 trees, depth 6, eta 0.1, hist, the valid window evaluated every round (no early stopping, so both
build exactly 100 trees), same seed. AUC of each booster on the test set (computed the same way in a
process of its own after the run, so neither in the time nor in the memory).
Peak memory, over the run's whole process tree (for spark: driver, JVM and Python workers), two ways:

- ``peak_rss_mb``: the largest sum of the processes' RSS, sampled every 50 ms. It counts a page once per
  process that maps it: the shared libraries that the driver and the training worker both load (xgboost's,
  Arrow's, numpy's), and the pages a forked Python worker shares with its daemon where there is one, count
  twice.
- ``peak_pss_mb``: the largest sum of their PSS (proportional set size: a page shared by k processes counts
  1/k in each), read where the RSS sum is within 3% of its peak, at most every 0.5 s. Summed over a tree
  that nothing outside maps into, that is the physical memory the run holds, what a container's memory
  limit sees. So this process (the bench's parent) imports neither numpy nor xgboost: the data is written
  and the boosters scored in their own processes.

    .venv/bin/python bench/bench_train.py --rows 1000000 4000000 --repeat 3

``--variants '{"cds": {}, "cold": {"TRAINYARD_JVM_CDS": "off"}}'`` measures one change instead: the spark run
under each environment, alternating (how the A/B rounds in bench/RESULTS.md from the tenth session on were
run; ``TRAINYARD_JVM_CDS=off`` runs without the JVM class-data archive). ``{"BENCH_CODE": "/path/to/worktree"}``
as a variant runs the spark kind of another commit's checkout: how the removals of issue 21 were measured.

``--device cuda`` trains both on the GPU (``device: cuda``; the spark path as ``jobs.train`` runs it with
``train.device: cuda``, one worker on GPU 0 on a local master). ``BENCH_SPARK_CONF='{"key": "value"}'``
adds session confs to the spark runs (how the JVM options in bench/RESULTS.md were tried).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAMS = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1, "tree_method": "hist", "eval_metric": "auc",
          "random_state": 7}


def make_data(root: Path, rows: int, n_features: int, seed: int = 1) -> None:
    """Write ``train/`` (rows, with the validation indicator) and ``test/`` as Parquet (128k-row groups, so
    Spark gets several input splits)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.normal(size=n_features)

    def chunk(n: int, start: int):
        x = rng.normal(size=(n, n_features)).astype("float32")
        z = x @ w * 0.5 + 1.5 * np.sin(x[:, 0] * 2) + x[:, 1] * x[:, 2] - 3.2 + rng.normal(scale=1.0, size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype("float64")
        cols = {f"f{i:02d}": x[:, i] for i in range(n_features)}
        cols.update({"id": np.arange(start, start + n, dtype="int64"), "label": y})
        return pa.table(cols)

    for name, n in (("train", rows), ("test", 200_000)):
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        step = 1_000_000
        for i, start in enumerate(range(0, n, step)):
            t = chunk(min(step, n - start), start)
            if name == "train":
                t = t.append_column("is_valid", pa.array(np.arange(start, start + t.num_rows) >= int(n * 0.9)))
            pq.write_table(t, out / f"part-{i:03d}.parquet", row_group_size=131_072)


def feature_names(n_features: int) -> list[str]:
    return [f"f{i:02d}" for i in range(n_features)]


def test_auc(booster, root: Path, n_features: int) -> float:
    import pyarrow.parquet as pq
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score
    t = pq.read_table(root / "test")
    x = t.select(feature_names(n_features)).to_pandas()
    return float(roc_auc_score(t["label"].to_numpy(), booster.predict(xgb.DMatrix(x))))


def run_single(root: Path, n_features: int, device: str) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import xgboost as xgb
    t0 = time.perf_counter()
    t = pq.read_table(root / "train")
    x = np.column_stack([t[c].to_numpy() for c in feature_names(n_features)])
    y, valid = t["label"].to_numpy(), t["is_valid"].to_numpy()
    del t
    names = feature_names(n_features)
    dtrain = xgb.QuantileDMatrix(x[~valid], y[~valid], feature_names=names)
    dvalid = xgb.QuantileDMatrix(x[valid], y[valid], ref=dtrain, feature_names=names)
    del x
    params = {"max_depth": PARAMS["max_depth"], "eta": PARAMS["learning_rate"], "tree_method": "hist",
              "objective": "binary:logistic", "eval_metric": "auc", "seed": PARAMS["random_state"],
              "nthread": os.cpu_count(), "device": device}
    booster = xgb.train(params, dtrain, PARAMS["n_estimators"], evals=[(dvalid, "valid")], verbose_eval=False)
    fit_s = time.perf_counter() - t0
    booster.save_model(str(root / "last-single.ubj"))
    return {"fit_s": fit_s, "trees": booster.num_boosted_rounds()}


def run_local(root: Path, n_features: int, device: str) -> dict:
    """The train step's local engine (``train.engine: local``, the default on one machine): the files read
    with pyarrow into an Arrow table (``xgb_local.read_files``; in the step the file list comes from the
    Delta snapshot Spark pins, not timed here), split into float32 train and valid matrices, then
    ``xgboost.XGBClassifier`` (``xgb_local.fit``) with every core."""
    import pyarrow.compute as pc
    importlib.import_module("xgboost")  # before the clock, as for the other kinds

    from jobs.common import xgb_local
    t0 = time.perf_counter()
    names = feature_names(n_features)
    files = sorted(str(f) for f in (root / "train").glob("*.parquet"))
    rows = xgb_local.FileRows({**xgb_local.FileRows.identity([*names, "label", "is_valid"]).columns, "weight": pc.scalar(1.0)})
    parts = xgb_local.split(xgb_local.read_files(files, rows), features=names, label="label", weight="weight",
                            valid="is_valid")
    clf = xgb_local.fit(parts, feature_types=["q"] * n_features, nthread=os.cpu_count() or 1,
                        params={**PARAMS, "early_stopping_rounds": None, "device": device})
    booster = clf.get_booster()
    fit_s = time.perf_counter() - t0
    booster.save_model(str(root / "last-local.ubj"))
    return {"fit_s": fit_s, "trees": booster.num_boosted_rounds()}


def run_spark(root: Path, n_features: int, device: str) -> dict:
    from pyspark.sql import functions as F

    importlib.import_module("xgboost.spark")  # before the clock, as run_single imports xgboost before its clock

    from jobs import train
    from jobs.common.config import Settings
    from jobs.common.spark import get_spark
    t_start = time.perf_counter()
    settings = Settings(spark_master="local[*]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",), landing="",
                        lake="", runs="", gx="", registry="",
                        spark_conf={"spark.driver.memory": os.environ.get("BENCH_DRIVER_MEMORY", "6g"), "spark.ui.enabled": "false",
                                    "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "8",
                                    **json.loads(os.environ.get("BENCH_SPARK_CONF", "{}"))})
    spark = get_spark(train.training_settings(settings, "auto"), "bench-train")  # as jobs.train builds it
    spark.range(1).count()
    t0 = time.perf_counter()
    names = feature_names(n_features)
    spec = SimpleNamespace(features=SimpleNamespace(names=names, categorical=[]), label=SimpleNamespace(name="label"))
    df = spark.read.parquet(str(root / "train")).withColumn("weight", F.lit(1.0))
    workers = train.resolve_workers("auto", spark, device)
    model = train.fit(df, spec, {**PARAMS, "early_stopping_rounds": None, "device": device}, workers)
    booster = model.get_booster()
    fit_s = time.perf_counter() - t0
    booster.save_model(str(root / "last-spark.ubj"))
    return {"fit_s": fit_s, "session_s": t0 - t_start, "workers": workers, "trees": booster.num_boosted_rounds()}


KINDS = {"spark": run_spark, "single": run_single, "local": run_local}


def _tree_memory(top, pss: bool) -> int:
    """The RSS (or PSS) sum of ``top`` and all its descendants; 0 for a process that ended meanwhile."""
    import psutil
    total = 0
    for p in [top, *top.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss if pss else p.memory_info().rss
        except psutil.Error:  # it ended between the listing and the reading
            pass
    return total


def measure(kind: str, root: Path, n_features: int, device: str) -> dict:
    """Run one trial in a fresh process; sample the RSS and PSS of its whole process tree. ``BENCH_CODE``: the
    root of another checkout (a ``git worktree`` of an older commit) whose bench script and code run instead,
    from that folder."""
    code = Path(os.environ.get("BENCH_CODE", ROOT))
    res = run_sampled([sys.executable, str(code / "bench" / "bench_train.py"), "--one", kind, "--data", str(root),
                       "--features", str(n_features), "--device", device], root / f"last-{kind}.stderr", cwd=code)
    res["auc"] = _in_child("--score", kind, "--data", str(root), "--features", str(n_features))["auc"]
    return res


def run_sampled(cmd: list[str], stderr: Path, cwd: Path | None = None) -> dict:
    """Run ``cmd`` and return the JSON it prints last, with the peak RSS sum and PSS sum of its process tree
    (``peak_rss_mb``, ``peak_pss_mb``: module docstring). Its stderr goes to ``stderr``."""
    import psutil
    err = open(stderr, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=cwd)
    top = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    pss_read = 0.0
    while proc.poll() is None:
        try:
            rss = _tree_memory(top, pss=False)
            peak_rss = max(peak_rss, rss)
            if rss >= 0.97 * peak_rss and time.monotonic() - pss_read >= 0.5:
                peak_pss, pss_read = max(peak_pss, _tree_memory(top, pss=True)), time.monotonic()
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    err.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed (rc {proc.returncode}); see {err.name}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb"] = round(peak_rss / 2**20)
    res["peak_pss_mb"] = round(peak_pss / 2**20)
    return res


def _in_child(*args: str) -> dict:
    """Run this script with ``args`` in a fresh process (so that this one maps none of the libraries the
    measured runs map) and return the JSON it prints last."""
    out = subprocess.run([sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _apply_env(env: dict) -> None:
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def environment(env: dict):
    """``os.environ`` with ``env`` applied (a None value unsets the variable) for the duration."""
    saved = {k: os.environ.get(k) for k in env}
    _apply_env(env)
    try:
        yield
    finally:
        _apply_env(saved)


def compare(root: Path, n_features: int, device: str, variants: dict, repeat: int) -> dict:
    """An A/B of one change on the spark path: its run under each variant's environment variables
    (``{"name": {"VAR": "value" or null to unset}}``), alternating, ``repeat`` times each; medians."""
    runs = {name: [] for name in variants}
    for i in range(repeat):
        for name, env in variants.items():
            with environment(env):
                r = measure("spark", root, n_features, device)
            runs[name].append(r)
            print(json.dumps({"variant": name, "run": i, **r}), flush=True)
    keys = ("fit_s", "session_s", "peak_rss_mb", "peak_pss_mb", "auc")
    return {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", default=None)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--variants", help='instead of spark against single node, the spark run under each of these '
                                      'environments, alternating: \'{"direct": {}, "stream": {"BENCH_STREAM": "1"}}\'')
    p.add_argument("--one", choices=list(KINDS), help=argparse.SUPPRESS)
    p.add_argument("--score", choices=list(KINDS), help=argparse.SUPPRESS)
    p.add_argument("--make", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        res = KINDS[a.one](Path(a.data), a.features, a.device)
        print(json.dumps(res), flush=True)
        return
    if a.score:  # after the run, in its own process: neither in the run's time nor in its memory
        import xgboost as xgb
        booster = xgb.Booster(model_file=str(Path(a.data) / f"last-{a.score}.ubj"))
        print(json.dumps({"auc": test_auc(booster, Path(a.data), a.features)}), flush=True)
        return
    if a.make:
        make_data(Path(a.data), a.make, a.features)
        print(json.dumps({"rows": a.make}), flush=True)
        return
    work = Path(a.work or tempfile.mkdtemp(prefix="trainyard-bench-train-"))
    summary = []
    for rows in a.rows:
        root = work / f"rows{rows}x{a.features}"
        if not (root / "test").exists():
            _in_child("--make", str(rows), "--data", str(root), "--features", str(a.features))
        if a.variants:
            medians = compare(root, a.features, a.device, json.loads(a.variants), a.repeat)
            summary.append({"rows": rows, "features": a.features, "device": a.device, "medians": medians})
            continue
        runs = {kind: [] for kind in KINDS}
        for i in range(a.repeat):  # alternate: this machine's capacity drifts over minutes
            for kind in KINDS:
                r = measure(kind, root, a.features, a.device)
                runs[kind].append(r)
                print(json.dumps({"rows": rows, "run": i, "kind": kind, **r}), flush=True)
        med = lambda kind, k: statistics.median(r[k] for r in runs[kind])  # noqa: E731
        s = {"rows": rows, "features": a.features, "device": a.device,
             "spark_fit_s": round(med("spark", "fit_s"), 2), "single_fit_s": round(med("single", "fit_s"), 2),
             "spark_session_s": round(med("spark", "session_s"), 2),
             "spark_peak_mb": med("spark", "peak_rss_mb"), "single_peak_mb": med("single", "peak_rss_mb"),
             "spark_peak_pss_mb": med("spark", "peak_pss_mb"), "single_peak_pss_mb": med("single", "peak_pss_mb"),
             "spark_auc": round(med("spark", "auc"), 4), "single_auc": round(med("single", "auc"), 4),
             "workers": runs["spark"][0]["workers"]}
        s.update({"local_fit_s": round(med("local", "fit_s"), 2), "local_peak_mb": med("local", "peak_rss_mb"),
                  "local_peak_pss_mb": med("local", "peak_pss_mb"), "local_auc": round(med("local", "auc"), 4)})
        s.update({"local_time_ratio": round(s["local_fit_s"] / s["single_fit_s"], 3),
                  "local_memory_ratio_pss": round(s["local_peak_pss_mb"] / s["single_peak_pss_mb"], 2),
                  "spark_over_local": round(s["spark_fit_s"] / s["local_fit_s"], 2)})
        s.update({"time_ratio": round(s["spark_fit_s"] / s["single_fit_s"], 2),
                  "memory_ratio": round(s["spark_peak_mb"] / s["single_peak_mb"], 2),
                  "memory_ratio_pss": round(s["spark_peak_pss_mb"] / s["single_peak_pss_mb"], 2),
                  "auc_diff": round(s["spark_auc"] - s["single_auc"], 4)})
        summary.append(s)
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cores", "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
