"""Benchmark: batch scoring of one day with the champion and the challenger, as ``jobs.score`` does it
(``jobs.model.predict``: the booster broadcast as bytes, each Arrow batch predicted in place on the
executors), against plain xgboost ``inplace_predict`` of the same Parquet in one process.

Data: ``bench_train.make_data``'s Parquet (N rows x F float features). Two models, trained once on a 200k-row
sample with plain xgboost (champion: 400 trees, depth 6, as params.yaml's ``train``; challenger: another
seed and depth 5), saved as UBJ and loaded through ``jobs.model`` like registry versions.

Each run is a fresh process; the kinds alternate, ``--repeat`` times each (this machine's speed drifts):

- **plain**: timed: pyarrow reads the Parquet into one float32 matrix, ``inplace_predict`` with each model
  (nthread = cores).
- **spark**: SparkSession local[*] as the steps build it (not timed); timed: ``spark.read.parquet``, then
  ``model.predict`` with the champion and with the challenger, the rows written to Spark's ``noop`` sink
  (every row computed, nothing stored).

After the runs, in a process of its own, the two kinds' scores are compared row by row (by id): the largest
absolute difference must stay under 1e-6. Rows/s = rows x 1 / median time (each row scored by both models).

    .venv/bin/python bench/bench_score.py --rows 4000000 --repeat 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODELS = {"champion": {"max_depth": 6, "seed": 42, "rounds": 400}, "challenger": {"max_depth": 5, "seed": 7, "rounds": 400}}


def train_models(root: Path, n_features: int) -> None:
    import numpy as np
    import pyarrow.parquet as pq
    import xgboost as xgb

    from bench_train import feature_names
    t = pq.read_table(root / "train", columns=[*feature_names(n_features), "label"]).slice(0, 200_000)
    x = np.column_stack([t[c].to_numpy() for c in feature_names(n_features)]).astype("float32")
    dm = xgb.DMatrix(x, label=t["label"].to_numpy(), feature_names=feature_names(n_features))
    for name, p in MODELS.items():
        b = xgb.train({"max_depth": p["max_depth"], "eta": 0.08, "subsample": 0.9, "tree_method": "hist", "seed": p["seed"],
                       "objective": "binary:logistic"}, dm, p["rounds"])
        b.feature_types = ["q"] * n_features
        b.save_model(str(root / f"{name}.ubj"))


def load_models(root: Path, n_features: int):
    import hashlib

    from bench_train import feature_names
    from jobs.model import Model
    out = {}
    for name in MODELS:
        data = (root / f"{name}.ubj").read_bytes()
        out[name] = Model("xgboost", data, hashlib.sha256(data).hexdigest(), feature_names(n_features),
                          ["q"] * n_features, version=name)
    return out


def run_plain(root: Path, n_features: int, save: bool = False) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import xgboost as xgb

    from bench_train import feature_names
    names = feature_names(n_features)
    boosters = {}
    for name in MODELS:
        boosters[name] = xgb.Booster(model_file=str(root / f"{name}.ubj"))
        boosters[name].set_param({"nthread": os.cpu_count()})
    t0 = time.perf_counter()
    t = pq.read_table(root / "train", columns=["id", *names])
    x = np.empty((t.num_rows, n_features), dtype="float32")
    for i, c in enumerate(names):
        x[:, i] = t[c].to_numpy()
    scores = {name: b.inplace_predict(x, missing=np.nan) for name, b in boosters.items()}
    seconds = time.perf_counter() - t0
    if save:
        np.savez(root / "plain_scores.npz", id=t["id"].to_numpy(), **scores)
    return {"seconds": seconds, "rows": t.num_rows}


def spark_session():
    from jobs.common.config import Settings
    from jobs.common.spark import get_spark
    settings = Settings(spark_master="local[*]", spark_packages=("io.delta:delta-spark_4.2_2.13:4.4.0",), landing="",
                        lake="", runs="", gx="", registry="",
                        spark_conf={"spark.driver.memory": "6g", "spark.ui.enabled": "false",
                                    "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "8"})
    return get_spark(settings, "bench-score")


def scored_frame(spark, root: Path, n_features: int):
    from jobs.model import predict
    models = load_models(root, n_features)
    df = spark.read.parquet(str(root / "train")).select("id", *models["champion"].feature_names)
    df = predict(df, models["champion"], out="champion")
    return predict(df, models["challenger"], out="challenger").select("id", "champion", "challenger")


def run_spark(root: Path, n_features: int) -> dict:
    spark = spark_session()
    spark.range(1).count()
    t0 = time.perf_counter()
    scored_frame(spark, root, n_features).write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": spark.read.parquet(str(root / "train")).count()}


def check_equal(root: Path, n_features: int) -> dict:
    """Largest |spark score - plain score| over every row, both models."""
    import numpy as np
    run_plain(root, n_features, save=True)
    spark = spark_session()
    out = root / "spark_scores"
    scored_frame(spark, root, n_features).write.mode("overwrite").parquet(str(out))
    import pyarrow.parquet as pq
    s = pq.read_table(out).to_pandas().sort_values("id")
    p = np.load(root / "plain_scores.npz")
    order = np.argsort(p["id"])
    assert (s["id"].to_numpy() == p["id"][order]).all()
    return {name: float(np.abs(s[name].to_numpy() - p[name][order]).max()) for name in MODELS}


KINDS = {"plain": run_plain, "spark": run_spark}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", default=None)
    p.add_argument("--one", choices=list(KINDS), help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one or a.check or a.prepare:
        root = Path(a.data)
        if a.prepare:
            from bench_train import make_data
            make_data(root, a.rows, a.features)
            train_models(root, a.features)
            res = {"rows": a.rows}
        else:
            res = check_equal(root, a.features) if a.check else KINDS[a.one](root, a.features)
        print(json.dumps(res), flush=True)
        return
    root = Path(a.work or tempfile.mkdtemp(prefix="trainyard-bench-score-")) / f"rows{a.rows}x{a.features}"
    if not (root / "challenger.ubj").exists():
        _child("--prepare", "--rows", str(a.rows), "--features", str(a.features), "--data", str(root))
    runs = {k: [] for k in KINDS}
    for i in range(a.repeat):  # alternate: this machine's capacity drifts over minutes
        for kind in KINDS:
            r = _child("--one", kind, "--features", str(a.features), "--data", str(root))
            runs[kind].append(r["seconds"])
            print(json.dumps({"run": i, "kind": kind, **r}), flush=True)
    diff = _child("--check", "--features", str(a.features), "--data", str(root))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({"rows": a.rows, "features": a.features, "cores": os.cpu_count(), "models": list(MODELS),
                      "median_s": {k: round(v, 2) for k, v in med.items()},
                      "rows_per_s": {k: round(a.rows / v) for k, v in med.items()},
                      "spark_vs_plain_throughput": round(med["plain"] / med["spark"], 3),
                      "max_abs_score_difference": diff, "runs_s": {k: [round(x, 2) for x in v] for k, v in runs.items()}}),
          flush=True)


if __name__ == "__main__":
    main()
