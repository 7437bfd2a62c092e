"""GPU training: ``train.device: cuda`` trains on the GPU. Runs where xgboost has CUDA and nvidia-smi lists a
GPU (a GPU executor); skipped elsewhere, CI included.

The train step runs as a task runs it, in its own process, once with ``--set train.device=cuda`` and once on
the CPU, on the same Delta training set (``train.engine: auto``: the local engine, plain XGBoost in the step's
process). The GPU run's ``train.json`` must say xgboost trained on ``cuda:0``: that is the booster's own
config, not the requested param. (nvidia-smi cannot tell the runs apart: on the H100 it passed on, the CPU
run's driver and worker, with xgboost's CUDA build loaded, were listed holding GPU memory too.) Both models
are then scored on the holdout by the evaluate step's own scorer on CPU executors (a model trained on a GPU
is served anywhere): they must pass their sha256 check and the GPU model must be within 0.005 AUC of the
CPU one."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys

import pytest
import yaml
from pyspark.sql import functions as F

from tests.conftest import REPO, write_conf
from tests.helpers import write_training_set

DS = dt.date(2026, 10, 30)


def _no_gpu() -> str | None:
    """Why GPU training cannot run here; None when it can."""
    import xgboost as xgb
    if not xgb.build_info().get("USE_CUDA"):
        return "xgboost is built without CUDA"
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True) if smi else None
    if listed is None or listed.returncode != 0 or "GPU" not in listed.stdout:
        return "nvidia-smi lists no GPU"
    return None


WHY = _no_gpu()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"needs a CUDA GPU: {WHY}")


def _train(conf, params, device: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jobs.train", "--ds", DS.isoformat(), "--conf", str(conf), "--params", str(params),
           "--set", f"train.device={device}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def _holdout_auc(spark, root, runs) -> float:
    from sklearn.metrics import roc_auc_score

    from jobs.model import from_run, predict
    model = from_run(runs / "cards" / f"ds={DS}")  # verified against train.json's sha256
    holdout = (spark.read.format("delta").load(str(root / "lake" / "cards" / "training_set"))
               .where(F.col("split") == "holdout").select(*model.feature_names, F.col("is_fraud").cast("double")))
    scored = predict(holdout, model).toPandas()
    return roc_auc_score(scored["is_fraud"], scored["score"])


def test_device_cuda_trains_on_the_gpu_and_matches_the_cpu_model(spark, tmp_path, cards):
    conf = write_conf(tmp_path)
    write_training_set(spark, cards, 200_000, str(tmp_path / "lake" / "cards" / "training_set"), DS)
    doc = yaml.safe_load(conf.read_text())
    doc["storage"]["runs"] = str(tmp_path / "runs-cpu")
    conf_cpu = tmp_path / "conf-cpu.yaml"
    conf_cpu.write_text(yaml.safe_dump(doc))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(n_estimators=200, max_depth=6, early_stopping_rounds=0, checkpoint_every=50)
    ppath = tmp_path / "params.yaml"
    ppath.write_text(yaml.safe_dump(params))

    gpu = _train(conf, ppath, "cuda")
    assert gpu.returncode == 0, gpu.stderr[-3000:]
    cpu = _train(conf_cpu, ppath, "cpu")
    assert cpu.returncode == 0, cpu.stderr[-3000:]
    print(gpu.stdout, cpu.stdout, sep="")

    docs = {run: json.loads((tmp_path / run / "cards" / f"ds={DS}" / "model" / "train.json").read_text())
            for run in ("runs", "runs-cpu")}
    assert docs["runs"]["trained_on"] == "cuda:0" and docs["runs-cpu"]["trained_on"] == "cpu"
    assert docs["runs"]["params"]["device"] == "cuda" and docs["runs"]["num_boosted_rounds"] == 200
    assert docs["runs"]["engine"] == "local" and "on the local engine (cuda:0)" in gpu.stdout  # auto, one machine
    auc_gpu = _holdout_auc(spark, tmp_path, tmp_path / "runs")
    auc_cpu = _holdout_auc(spark, tmp_path, tmp_path / "runs-cpu")
    print(f"holdout AUC: cuda {auc_gpu:.5f}, cpu {auc_cpu:.5f}")
    assert auc_gpu > 0.75 and abs(auc_gpu - auc_cpu) <= 0.005
