"""Train: XGBoost on the training set of this run's cutoff. The train window trains, the valid window drives
early stopping, class imbalance is weighted from the data, seeds are fixed. The model is saved in XGBoost's
own UBJ format with its feature names and types, never pickled, and its sha256 is recorded for the
evaluation and publishing steps.

Two engines give the same model contract (``train.engine``): ``local`` fits plain XGBoost in this process
on the snapshot's files (``common.xgb_local``); ``spark`` fits ``SparkXGBClassifier`` with one barrier task
per worker (``common.xgb_spark``). ``auto``, the default, is ``local`` on a local master and ``spark`` on
a cluster."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io, jvm_cds, xgb_local, xgb_spark
from jobs.common.cli import StepContext, run_step
from jobs.common.files import sha256_file, write_json_atomic
from jobs.common.config import DatasetSpec, Settings
from jobs.common.errors import ConfigError, DataError
from jobs.tune import tuned_params

MODEL_FILE = "model.ubj"
VALID_COL = "is_valid"


def feature_types(spec: DatasetSpec) -> list[str]:
    """XGBoost feature types: 'c' for the declared categoricals (integer codes), 'q' otherwise."""
    return ["c" if n in spec.features.categorical else "q" for n in spec.features.names]


def training_frame(training_set: DataFrame, spec: DatasetSpec) -> DataFrame:
    """Labelled examples of the train and valid windows, with the validation indicator."""
    label = spec.label.name
    return (training_set.where(F.col("split").isin("train", "valid") & F.col(label).isNotNull())
            .select(spec.example_source.key, *spec.features.names, F.col(label).cast("double").alias(label),
                    F.coalesce(F.col("weight"), F.lit(1.0)).alias("weight"), (F.col("split") == "valid").alias(VALID_COL)))


def training_rows(spec: DatasetSpec) -> xgb_local.FileRows:
    """``training_frame`` as pyarrow expressions over the training set's files, for a reader of those files
    (the local engine, ``xgb_local.read_rows``; a one-worker Spark fit, ``xgb_spark.direct_input``): the same
    filter and the same columns, value for value (tests/unit/test_xgb_local.py and test_xgb_spark.py compare
    the two)."""
    import pyarrow.compute as pc
    label, split = spec.label.name, pc.field("split")
    columns = {spec.example_source.key: pc.field(spec.example_source.key),
               **{n: pc.field(n) for n in spec.features.names}, label: pc.field(label).cast("float64", safe=False),
               "weight": pc.coalesce(pc.field("weight"), pc.scalar(1.0)), VALID_COL: split == "valid"}
    return xgb_local.FileRows(columns, split.isin(["train", "valid"]) & pc.field(label).is_valid())


def load_training_frame(spark, ctx: StepContext) -> tuple[DataFrame, dict[str, int]]:
    """This cutoff's train and valid rows from the pinned training set, with their class counts (a pass
    over two columns); refuses a window that lacks a class. Shared by train and tune. Not cached: both
    engines read the snapshot's files (the local engine with pyarrow, ``xgb_local.read_rows``; the spark
    engine's workers through ``xgb_spark.worker_input``), which a cached copy would prevent and double the
    memory of."""
    ts = (delta_io.read_pinned(spark, ctx.table("training_set"), ctx.reads, "training_set")
          .where(F.col("cutoff_ds") == F.lit(ctx.ds)))
    df = training_frame(ts, ctx.dataset)
    counts = class_balance(df, ctx.dataset.label.name)
    check_trainable(counts, f"training_set cutoff_ds={ctx.ds}")
    return df, counts


def feature_matrix(pdf, names: list[str], types: list[str], **meta):
    """The DMatrix every driver or executor path builds from a pandas frame (scoring, SHAP, tuning): float32
    features, the declared feature types, NaN as missing; ``meta`` is label, weight, ..."""
    import numpy as np
    import xgboost as xgb
    return xgb.DMatrix(pdf[names].astype("float32"), feature_types=types, enable_categorical=True, missing=np.nan, **meta)


def booster_from_bytes(model: bytes):
    import xgboost as xgb
    booster = xgb.Booster()
    booster.load_model(bytearray(model))
    return booster


def class_balance(df: DataFrame, label: str) -> dict[str, int]:
    rows = df.where(F.col("weight") > 0).groupBy(VALID_COL, label).count().collect()
    get = lambda v, y: sum(r["count"] for r in rows if r[VALID_COL] == v and r[label] == y)  # noqa: E731
    return {"train_pos": get(False, 1.0), "train_neg": get(False, 0.0), "valid_pos": get(True, 1.0), "valid_neg": get(True, 0.0)}


def check_trainable(counts: dict[str, int], where: str) -> None:
    for part in ("train", "valid"):
        if counts[f"{part}_pos"] == 0 or counts[f"{part}_neg"] == 0:
            raise DataError(f"{where}: the {part} window needs both classes, found {counts}; "
                            "no model is trained from it")


def local_cores(master: str) -> int | None:
    """The cores of a ``local``/``local[N]``/``local[*]`` master; None for a cluster."""
    m = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master)
    if not m:
        return None
    return 1 if m.group(1) is None else (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1))


ENGINES = ("auto", "local", "spark")


def resolve_engine(engine: Any, master: str) -> str:
    """``local`` or ``spark`` for the ``train.engine`` param: ``auto`` is ``local`` on a local master (one
    process, plain XGBoost) and ``spark`` on a cluster."""
    engine = "auto" if engine is None else str(engine)
    if engine not in ENGINES:
        raise ConfigError(f"params train.engine: {engine!r} is not one of {list(ENGINES)}")
    if engine == "auto":
        return "local" if local_cores(master) is not None else "spark"
    return engine


def task_slots(spark, device: str = "cpu") -> int:
    """How many tasks Spark can run at once: xgboost.spark runs its workers as one barrier stage, so
    asking for more workers than slots waits forever. A GPU fit on a cluster gets one GPU per worker, so
    there the executors' GPUs bound it too (``spark.executor.resource.gpu.amount``)."""
    sc = spark.sparkContext
    conf = sc.getConf()
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    cores = local_cores(sc.master)
    if cores is not None:
        return max(1, cores // task_cpus)
    executors = int(conf.get("spark.executor.instances", "1"))
    slots = max(1, executors * int(conf.get("spark.executor.cores", "1")) // task_cpus)
    if device.startswith("cuda"):
        slots = min(slots, max(1, executors * int(float(conf.get("spark.executor.resource.gpu.amount", "1")))))
    return slots


def training_settings(settings: Settings, num_workers: Any) -> Settings:
    """The train step's session settings. xgboost.spark gives each worker ``spark.task.cpus`` threads, so on
    one machine (a local master) the cores are divided among the workers through it: ``auto`` is one worker
    with every core, a number N gives each of N workers cores // N. One worker with both cores of this
    machine was faster than two with one each (bench/RESULTS.md): one Python worker to start, no allreduce
    between processes, the QuantileDMatrix and the boosting on all cores. A conf that sets
    ``spark.task.cpus`` itself wins. On a cluster nothing changes: set ``spark.task.cpus`` to the executor
    cores, as xgboost.spark advises, and ``auto`` is one worker per task slot.

    On one machine the JVM of this step only streams rows to the Python worker, so unless the conf names a
    collector it runs the serial one, with a heap sized by the stream instead of the machine
    (bench/RESULTS.md):
    - G1 grew its heap to ~1.4 GB of garbage at 1M rows; the serial collector stays near 0.7 GB at the same
      speed.
    - The JVM's default initial heap is 1/64 of the machine's memory (384 MB here, 2 GB with 128 GB), and the
      serial collector lets garbage fill it while streaming: the Parquet reader's row-group buffers outlive a
      young collection, get promoted, and fill the old generation before the first full collection.
      ``-Xms128m -Xmn48m`` per task slot (the start capped at half of ``spark.driver.memory``; nothing when
      the conf sizes the heap) lets the heap grow only to what the stream keeps alive. At 1M rows that is
      ~100 MB less here (1,553 -> 1,455 MB for the whole fit) and ~450 MB less with 128 GB of RAM, for
      0.2-0.8 s more collection; at 4M rows no time difference showed.

    Where the JVM has it (JDK 17.0.9+, 21.0.1+) and the conf does not set it, the JVM also hands the C heap's
    free memory back to the system every second (``NATIVE_TRIM``): what the JIT compilers' arenas and the
    stream's native buffers freed, ~50 MB idle at 1M rows; measured, 23 MB lower peak at 1M and 47 MB at
    4M, same time.

    The fit's one Python worker per task is started without a worker daemon and without scikit-learn
    (``LEAN_WORKER``, ``common.lean_worker``), unless the conf sets either key: -46 MB for the daemon,
    -70 MB and ~1.5 s of imports in the worker at 1M rows (bench/RESULTS.md)."""
    cores = local_cores(settings.spark_master)
    if cores is None:
        return settings
    conf = dict(settings.spark_conf)
    if "spark.task.cpus" not in conf:
        workers = 1 if num_workers in (None, "auto", 0) else max(1, min(int(num_workers), cores))
        conf["spark.task.cpus"] = str(cores // workers)
    java_opts = conf.get("spark.driver.extraJavaOptions", "")
    if not re.search(r"-XX:\+Use\w*GC\b", java_opts):
        slots = max(1, cores // int(conf["spark.task.cpus"]))
        sized = re.search(r"-Xm[sn]\d|-XX:(Initial\w*|New|MaxNew)Size=", java_opts)
        start = min(128 * slots, jvm_mib(conf.get("spark.driver.memory", "1g")) // 2)  # below the max heap
        heap = "" if sized else f" -Xms{start}m -Xmn{min(48 * slots, start * 3 // 8)}m"
        conf["spark.driver.extraJavaOptions"] = f"{java_opts} -XX:+UseSerialGC{heap}".strip()
    if "TrimNativeHeapInterval" not in java_opts and java_accepts(NATIVE_TRIM):
        conf["spark.driver.extraJavaOptions"] = f"{conf.get('spark.driver.extraJavaOptions', '')} {NATIVE_TRIM}".strip()
    if not any(k in conf for k in LEAN_WORKER):
        conf.update(LEAN_WORKER)
    return dataclasses.replace(settings, spark_conf=conf)


# the fit's Python worker started on its own (no daemon) without scikit-learn: ``common.lean_worker``
LEAN_WORKER = {"spark.python.use.daemon": "false", "spark.python.worker.module": "jobs.common.lean_worker"}


NATIVE_TRIM = "-XX:TrimNativeHeapInterval=1000"  # ms; a product option from JDK 17.0.9 and 21.0.1 on


@functools.lru_cache(maxsize=None)
def java_accepts(option: str) -> bool:
    """Whether the JVM that spark-submit starts (``$JAVA_HOME/bin/java``, else ``java`` on the PATH) starts
    with ``option``: an option it does not know stops it from starting. One ``-version`` run per option."""
    java = jvm_cds.java_binary()
    if java is None:
        return False
    try:
        return subprocess.run([str(java), option, "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def jvm_mib(size: str) -> int:
    """MiB in a Spark memory size (``6g``, ``512m``, ``2048k``; a bare number is MiB, as for
    ``spark.driver.memory``)."""
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)b?", size.strip().lower())
    if not m:
        raise ValueError(f"not a memory size: {size!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n // 1024 if unit == "k" else n * {"": 1, "m": 1, "g": 2**10, "t": 2**20}[unit]


def resolve_workers(value: Any, spark, device: str = "cpu") -> int:
    """``auto``: one worker per task slot (on one machine, with ``training_settings``: one worker; a GPU fit
    on a cluster: one per executor GPU). An explicit number above the slots is capped, with a note."""
    slots = task_slots(spark, device)
    if value in (None, "auto", 0):
        return slots
    if int(value) > slots:
        print(f"train: num_workers {value} > {slots} task slots; using {slots} (a barrier stage needs them all at once)")
        return slots
    return int(value)


def xgb_params(p: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    spw = p.get("scale_pos_weight", "auto")
    if spw == "auto":
        spw = counts["train_neg"] / max(counts["train_pos"], 1)
    return {"n_estimators": int(p.get("n_estimators", 300)), "max_depth": int(p.get("max_depth", 6)),
            "learning_rate": float(p.get("learning_rate", 0.1)), "subsample": float(p.get("subsample", 1.0)),
            "colsample_bytree": float(p.get("colsample_bytree", 1.0)), "min_child_weight": float(p.get("min_child_weight", 1.0)),
            "reg_lambda": float(p.get("reg_lambda", 1.0)), "max_cat_to_onehot": int(p.get("max_cat_to_onehot", 4)),
            "scale_pos_weight": float(spw), "early_stopping_rounds": int(p.get("early_stopping_rounds", 30)) or None,
            "eval_metric": p.get("eval_metric", "aucpr"), "tree_method": "hist", "device": p.get("device", "cpu"),
            "verbose": bool(p.get("verbose", False)),
            "random_state": int(p.get("seed", 42))}


class CheckpointEvery:
    """An XGBoost training callback (built lazily so this module imports without xgboost): every ``every``
    rounds the rank-0 worker writes the booster to ``directory`` as ``ckpt-NNNNNN.ubj``, atomically.
    ``directory`` must be reachable from the workers (local mode: the run folder; a cluster: shared storage)."""

    def __new__(cls, directory: str, every: int):
        import xgboost as xgb

        class _Checkpoint(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                from xgboost import collective
                rounds = model.num_boosted_rounds()
                if rounds % every == 0 and collective.get_rank() == 0:
                    final = Path(directory) / f"ckpt-{rounds:06d}.ubj"
                    tmp = final.with_name(f".{final.name}.tmp")
                    tmp.write_bytes(bytes(model.save_raw("ubj")))
                    os.replace(tmp, final)
                return False
        return _Checkpoint()


def latest_checkpoint(directory: Path, fingerprint: str) -> Path | None:
    """The newest checkpoint written for exactly this training input and these params, if any."""
    marker = directory / "fingerprint.txt"
    if not marker.exists() or marker.read_text() != fingerprint:
        return None
    ckpts = sorted(directory.glob("ckpt-*.ubj"))
    return ckpts[-1] if ckpts else None


def resume_point(directory: Path, fingerprint: str):
    """(booster, rounds done) from the last checkpoint of this exact input and params; (None, 0) after
    starting the checkpoint folder afresh for them."""
    latest = latest_checkpoint(directory, fingerprint)
    if latest is None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        (directory / "fingerprint.txt").write_text(fingerprint)
        return None, 0
    import xgboost as xgb
    booster = xgb.Booster()
    booster.load_model(str(latest))
    print(f"train: resuming from {latest.name} ({booster.num_boosted_rounds()} rounds done)")
    return booster, booster.num_boosted_rounds()


def fit(parts: DataFrame, spec: DatasetSpec, params: dict[str, Any], num_workers: int, callbacks: list | None = None,
        init_model=None, direct: xgb_spark.DirectInput | None = None):
    """Fit on Spark on a frame already in exactly ``num_workers`` partitions (``xgb_spark.worker_input``);
    ``init_model`` continues boosting from a checkpoint; with ``direct`` the one worker reads the frame's
    files itself. The classifier is xgboost.spark's with the substitutions of ``common.xgb_spark`` (no label
    pass, one float32 copy per Arrow batch, no training-set evaluation)."""
    extra = {"callbacks": callbacks} if callbacks else {}
    if init_model is not None:
        extra["xgb_model"] = init_model
    return xgb_spark.fit_binary(parts, direct=direct, features_col=spec.features.names, label_col=spec.label.name,
                                validation_indicator_col=VALID_COL, weight_col="weight", num_workers=num_workers,
                                feature_types=feature_types(spec), missing=float("nan"), **params, **extra)


def fit_local(spark, df: DataFrame, table: str, spec: DatasetSpec, params: dict[str, Any], callbacks: list | None = None,
              init_model=None):
    """The local engine: ``df`` (``training_frame`` of the Delta table at ``table``) read into this process
    (``xgb_local.read_rows``) and fitted by plain XGBoost with every core of the local master."""
    data, how = xgb_local.read_rows(spark, df, table, training_rows(spec))
    print(f"train: local engine, {data.num_rows} rows from {how}")
    parts = xgb_local.split(data, features=spec.features.names, label=spec.label.name, weight="weight", valid=VALID_COL)
    del data
    return xgb_local.fit(parts, feature_types=feature_types(spec), params=params, callbacks=callbacks, init_model=init_model,
                         nthread=local_cores(spark.sparkContext.master) or os.cpu_count() or 1)


def trained_on(booster) -> str:
    """The device xgboost trained on ('cpu', 'cuda:0', ...): the worker's booster config comes back with the
    model, so this is xgboost's own record, not the requested ``device``."""
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"]


def save_booster(model, spec: DatasetSpec, out_dir: Path) -> tuple[Path, Any]:
    """Save the booster cut at its best iteration: the artifact is exactly the model that gets scored."""
    booster = model.get_booster()
    best = booster.attr("best_iteration")
    if best is not None and int(best) + 1 < booster.num_boosted_rounds():
        sliced = booster[: int(best) + 1]
        for k, v in booster.attributes().items():
            sliced.set_attr(**{k: v})
        booster = sliced
    booster.feature_names = spec.features.names
    booster.feature_types = feature_types(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    tmp = out_dir / f".partial.{MODEL_FILE}"  # the extension tells xgboost the format (UBJ)
    booster.save_model(str(tmp))
    os.replace(tmp, path)
    return path, booster


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    spec, p = ctx.dataset, ctx.step_params()
    requested = p.get("num_workers", "auto")
    engine = resolve_engine(p.get("engine"), ctx.settings.spark_master)
    spark = get_spark(training_settings(ctx.settings, requested) if engine == "spark" else ctx.settings, "train")
    df, counts = load_training_frame(spark, ctx)
    tuned = tuned_params(ctx.run_dir, ctx.reads["training_set"])
    if tuned:
        print(f"train: tuned params from the tune step: {tuned}")
    params = xgb_params({**p, **(tuned or {})}, counts)
    workers = resolve_workers(requested, spark, params["device"]) if engine == "spark" else 1
    # resumable: a retried task continues from the last checkpoint of the same input and params
    ckpt_dir = ctx.run_dir / "model" / "checkpoints"
    fingerprint = hashlib.sha256(json.dumps([params, spec.features.names, ctx.reads["training_set"]],
                                            sort_keys=True, default=str).encode()).hexdigest()
    init, done = resume_point(ckpt_dir, fingerprint)
    every = int(p.get("checkpoint_every", 25))
    remaining = {**params, "n_estimators": max(params["n_estimators"] - done, 0)}
    if remaining["n_estimators"] == 0:
        model, device = _BoosterModel(init), params["device"]  # a loaded checkpoint's config names no device
    else:
        callbacks = [CheckpointEvery(str(ckpt_dir), every)] if every else None
        if engine == "local":
            model = fit_local(spark, df, ctx.table("training_set"), spec, remaining, callbacks, init)
        else:
            with xgb_spark.worker_input(df, workers, VALID_COL) as parts:
                direct = xgb_spark.direct_input(parts, training_rows(spec), workers)
                model = fit(parts, spec, remaining, workers, callbacks, init, direct)
        device = trained_on(model.get_booster())
    path, booster = save_booster(model, spec, ctx.run_dir / "model")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    best = booster.attr("best_iteration")
    doc = {"artifact": str(path), "sha256": sha256_file(path), "format": "ubj", "engine": engine, "num_workers": workers,
           "trained_on": device, "params": params, "counts": counts, "feature_names": spec.features.names,
           "feature_types": feature_types(spec),
           "best_iteration": int(best) if best is not None else None, "best_score": booster.attr("best_score"),
           "num_boosted_rounds": booster.num_boosted_rounds(), "resumed_from_round": done, "label": spec.label.name,
           "tuned": tuned}
    write_json_atomic(ctx.run_dir / "model" / "train.json", doc)
    ctx.counts.update({"rows": counts, "sha256": doc["sha256"], "best_iteration": doc["best_iteration"],
                       "num_boosted_rounds": doc["num_boosted_rounds"]})
    on = (f"{workers} Spark worker" + ("s" if workers != 1 else "") if engine == "spark" else "the local engine") \
        + (f" ({device})" if device != "cpu" else "")
    print(f"train {spec.name} cutoff {ctx.ds}: {doc['num_boosted_rounds']} rounds (best {doc['best_iteration']}, "
          f"valid {params['eval_metric']} {doc['best_score']}) on {on} -> {path} sha256 {doc['sha256'][:12]}")


class _BoosterModel:
    """A finished checkpoint standing in for a fitted model (all rounds were done before the retry)."""

    def __init__(self, booster):
        self._booster = booster

    def get_booster(self):
        return self._booster


def main(argv: list[str] | None = None) -> None:
    run_step("train", run, argv, __doc__)


if __name__ == "__main__":
    main()
