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
import hashlib
import json
import os
import re
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common import delta_io, storage, xgb_local, xgb_spark
from jobs.common.cli import StepContext, run_step
from jobs.common.files import sha256_file, write_json_atomic
from jobs.common.config import DatasetSpec, Settings
from jobs.common.errors import ConfigError, DataError
from jobs.model import (booster_from_bytes, encode, encode_arrow, feature_types, fit_prior, learn_vocabularies, save_booster,
                        save_prior)

VALID_COL = "is_valid"
PROFILE_FILE = "profile.json"  # the train window's reference profile (jobs.drift), published with the model


def training_frame(training_set: DataFrame, spec: DatasetSpec) -> DataFrame:
    """Labelled examples of the train and valid windows, with the validation indicator."""
    label = spec.label.name
    return (training_set.where(F.col("split").isin("train", "valid") & F.col(label).isNotNull())
            .select(spec.example_source.key, *spec.features.names, F.col(label).cast("double").alias(label),
                    F.coalesce(F.col("weight"), F.lit(1.0)).alias("weight"), (F.col("split") == "valid").alias(VALID_COL)))


def training_rows(spec: DatasetSpec, vocabularies: dict[str, list[str]] | None = None) -> xgb_local.FileRows:
    """``training_frame`` (encoded with ``vocabularies``) as pyarrow expressions over the training set's
    files, for a reader of those files (the local engine, ``xgb_local.read_rows``): the same filter and the
    same columns, value for value (tests/unit/test_xgb_local.py compares the two)."""
    import pyarrow.compute as pc
    label, split = spec.label.name, pc.field("split")
    columns = {spec.example_source.key: pc.field(spec.example_source.key),
               **encode_arrow(vocabularies, {n: pc.field(n) for n in spec.features.names}),
               label: pc.field(label).cast("float64", safe=False),
               "weight": pc.coalesce(pc.field("weight"), pc.scalar(1.0)), VALID_COL: split == "valid"}
    return xgb_local.FileRows(columns, split.isin(["train", "valid"]) & pc.field(label).is_valid())


def tuned_path(run_dir: Path) -> Path:
    """Where the tune step leaves its best params for this step (``jobs.tune``)."""
    return run_dir / "tune" / "best_params.json"


def tuned_params(run_dir: Path, training_set_version: int) -> dict[str, Any] | None:
    """The tuned params for train, if this run was tuned; refuse params tuned on other data."""
    path = tuned_path(run_dir)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if not doc.get("enabled"):
        return None
    if doc.get("training_set_version") != training_set_version:
        raise DataError(f"{path}: tuned on training_set version {doc.get('training_set_version')}, train reads version "
                        f"{training_set_version}; rerun tune (or set tune.enabled: false)")
    return dict(doc["best_params"])


def pinned_training_frame(spark, ctx: StepContext) -> tuple[DataFrame, dict[str, list[str]]]:
    """This cutoff's train and valid rows from the pinned training set, the learned categoricals coded by
    the vocabularies learned from its train window (``model.learn_vocabularies``). Returns (rows,
    vocabularies). Not cached: the local engine reads the snapshot's files with pyarrow
    (``xgb_local.read_rows``) and the spark engine's shuffle into one partition per worker reads them once; a
    cached copy would only double the memory."""
    ts = (delta_io.read_pinned(spark, ctx.table("training_set"), ctx.reads, "training_set")
          .where(F.col("cutoff_ds") == F.lit(ctx.ds)))
    vocabularies = learn_vocabularies(ts.where(F.col("split") == "train"), ctx.dataset)
    return encode(training_frame(ts, ctx.dataset), vocabularies), vocabularies


def load_training_frame(spark, ctx: StepContext) -> tuple[DataFrame, dict[str, int], dict[str, list[str]]]:
    """``pinned_training_frame`` with its class counts (a pass over two columns); refuses a window that lacks
    a class. Returns (rows, counts, vocabularies). Shared by train's spark engine and tune."""
    df, vocabularies = pinned_training_frame(spark, ctx)
    counts = class_balance(df, ctx.dataset.label.name, ctx.dataset.task, ctx.dataset.label.classes)
    check_trainable(counts, f"training_set cutoff_ds={ctx.ds}")
    return df, counts, vocabularies


def class_balance(df: DataFrame, label: str, task: str = "binary", classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Rows of the train and valid windows: per class (binary; multiclass: ``<window>_classes``, rows per class
    index, beside ``<window>_rows``), or in all (regression)."""
    keys = [VALID_COL] if task == "regression" else [VALID_COL, label]
    return _balance(df.where(F.col("weight") > 0).groupBy(*keys).count().collect(), label, task, classes)


def class_balance_rows(data, label: str, task: str = "binary", classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """``class_balance`` of the same frame's rows as an Arrow table (the local engine's ``xgb_local.read_rows``):
    the same counts without a Spark pass."""
    import pyarrow.compute as pc
    keys = [VALID_COL] if task == "regression" else [VALID_COL, label]
    grouped = data.filter(pc.greater(data.column("weight"), 0)).group_by(keys).aggregate([([], "count_all")])
    return _balance([{**r, "count": r["count_all"]} for r in grouped.to_pylist()], label, task, classes)


def _balance(rows: list, label: str, task: str, classes: tuple[str, ...]) -> dict[str, Any]:
    """The counts of ``class_balance`` from rows of (``VALID_COL``, the label for a classifier, ``count``)."""
    if task == "multiclass":
        out: dict[str, Any] = {}
        for part, valid in (("train", False), ("valid", True)):
            per = [sum(r["count"] for r in rows if r[VALID_COL] == valid and r[label] == float(i)) for i in range(len(classes))]
            out.update({f"{part}_rows": sum(per), f"{part}_classes": dict(zip(classes, per))})
        return out
    if task == "regression":
        return {f"{part}_rows": sum(r["count"] for r in rows if r[VALID_COL] == valid)
                for part, valid in (("train", False), ("valid", True))}
    get = lambda v, y: sum(r["count"] for r in rows if r[VALID_COL] == v and r[label] == y)  # noqa: E731
    return {"train_pos": get(False, 1.0), "train_neg": get(False, 0.0), "valid_pos": get(True, 1.0), "valid_neg": get(True, 0.0)}


def check_trainable(counts: dict[str, int], where: str) -> None:
    missing = [c for c, n in (counts.get("train_classes") or {}).items() if not n]
    if missing:  # a multiclass model learns every class from its train window, or none
        raise DataError(f"{where}: the train window has no example of class(es) {missing}, found {counts['train_classes']}; "
                        "no model is trained from it")
    for part in ("train", "valid"):
        if f"{part}_rows" in counts:
            if not counts[f"{part}_rows"]:
                raise DataError(f"{where}: the {part} window has no labelled row; no model is trained from it")
        elif counts[f"{part}_pos"] == 0 or counts[f"{part}_neg"] == 0:
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
    """How many tasks this Spark application can run at once: xgboost.spark runs its workers as one barrier
    stage, which waits until it has a slot for every worker. One machine: the local master's cores over
    ``spark.task.cpus``. A cluster: the slots of the executors that registered (``registered_slots``). A GPU
    fit on a cluster gets one GPU per worker, so there the executors' GPUs bound it too
    (``spark.executor.resource.gpu.amount``)."""
    sc = spark.sparkContext
    conf = sc.getConf()
    cores = local_cores(sc.master)
    if cores is not None:
        return max(1, cores // int(conf.get("spark.task.cpus", "1")))
    slots, executors = registered_slots(sc, expected_slots(conf))
    if device.startswith("cuda"):
        slots = min(slots, executors * int(float(conf.get("spark.executor.resource.gpu.amount", "0"))))
    return slots


def expected_slots(conf) -> int | None:
    """The task slots a cluster conf asks for, if it says: ``spark.cores.max`` (standalone) or
    ``spark.executor.instances`` x ``spark.executor.cores`` (YARN, Kubernetes), over ``spark.task.cpus``."""
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    if conf.get("spark.cores.max"):
        return int(conf.get("spark.cores.max")) // task_cpus
    if conf.get("spark.executor.instances") and conf.get("spark.executor.cores"):
        return int(conf.get("spark.executor.instances")) * int(conf.get("spark.executor.cores")) // task_cpus
    return None


EXECUTOR_WAIT_S = 60.0  # how long a cluster fit waits for its executors to register


def registered_slots(sc, expected: int | None, wait_s: float = EXECUTOR_WAIT_S) -> tuple[int, int]:
    """(task slots, executors) of the executors registered with this application, counted the way
    xgboost.spark counts them before its barrier stage. Executors register a few seconds after the session
    starts: this waits until ``expected`` slots are there, or (``expected`` None) until the count is above 0
    and has not changed for 5 s, at most ``wait_s``."""
    import time
    from xgboost.spark.utils import _get_max_num_concurrent_tasks  # the count the library checks against
    deadline, stable_since, last = time.monotonic() + wait_s, time.monotonic(), -1
    while True:
        slots = int(_get_max_num_concurrent_tasks(sc))
        executors = max(0, sc._jsc.sc().getExecutorMemoryStatus().size() - 1)  # the driver is listed too
        now = time.monotonic()
        if slots != last:
            stable_since, last = now, slots
        if (expected is not None and slots >= expected) or (expected is None and slots and now - stable_since >= 5):
            return slots, executors
        if now >= deadline:
            return slots, executors
        time.sleep(0.5)


def check_cluster(spark, device: str) -> None:
    """Refuse, before any work, a cluster that a distributed fit cannot use: dynamic allocation (executors
    come and go; a barrier stage needs all its slots at once and gets no new ones), or a GPU fit with no
    GPUs configured for the executors."""
    sc = spark.sparkContext
    if local_cores(sc.master) is not None:
        return
    conf = sc.getConf()
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        raise ConfigError("spark.dynamicAllocation.enabled is true: xgboost.spark's barrier stage needs all its "
                          "workers at once on executors that stay; turn it off for the train step's session")
    if device.startswith("cuda") and not conf.get("spark.executor.resource.gpu.amount"):
        raise ConfigError(f"params train.device: {device} on a cluster needs GPUs on the executors; "
                          "spark.executor.resource.gpu.amount is not set in the conf")


def auto_workers(value: Any) -> bool:
    """Whether ``train.num_workers`` leaves the number of workers to the task slots (``auto``)."""
    return value in (None, "auto", 0)


def training_settings(settings: Settings, num_workers: Any) -> Settings:
    """The spark engine's session settings. xgboost.spark gives each worker ``spark.task.cpus`` threads, so
    on one machine (a local master, ``train.engine: spark``) the cores are divided among the workers
    through it: ``auto`` is one worker with every core, a number N gives each of N workers cores // N. On a
    standalone cluster (``spark://``) a number N of workers asks for exactly their cores
    (``spark.cores.max`` = N x ``spark.task.cpus``) instead of every free core, so that another dataset's
    training can run beside it (the Airflow pool of the DAGs counts those slots); ``auto`` takes every
    core. Set ``spark.task.cpus`` to the executors' cores for one worker per executor, as xgboost.spark
    advises. What the conf sets itself wins."""
    conf = settings.spark_conf
    fixed = not auto_workers(num_workers)
    cores = local_cores(settings.spark_master)
    if cores is not None and "spark.task.cpus" not in conf:
        workers = max(1, min(int(num_workers), cores)) if fixed else 1
        return dataclasses.replace(settings, spark_conf={**conf, "spark.task.cpus": str(cores // workers)})
    if settings.spark_master.startswith("spark://") and fixed and "spark.cores.max" not in conf:
        task_cpus = int(conf.get("spark.task.cpus", "1"))
        return dataclasses.replace(settings, spark_conf={**conf, "spark.cores.max": str(int(num_workers) * task_cpus)})
    return settings


def resolve_workers(value: Any, spark, device: str = "cpu") -> int:
    """``auto``: one worker per task slot (on one machine, with ``training_settings``: one worker; a GPU fit
    on a cluster: one per executor GPU). More workers than slots are refused: a barrier stage would wait
    for them forever."""
    check_cluster(spark, device)
    slots = task_slots(spark, device)
    where = f"the Spark application on {spark.sparkContext.master}"
    if slots < 1:
        raise ConfigError(f"{where} has no task slot for a {device} worker (no executor registered within "
                          f"{EXECUTOR_WAIT_S:.0f} s, or none with a GPU)")
    if auto_workers(value):
        return slots
    if int(value) > slots:
        raise ConfigError(f"params train.num_workers: {value} workers need {value} task slots at once (one "
                          f"barrier stage) and {where} has {slots}; lower num_workers or use auto")
    return int(value)


TASK_DEFAULTS = {"binary": {"objective": "binary:logistic", "eval_metric": "aucpr"},
                 "regression": {"objective": "reg:squarederror", "eval_metric": "rmse"},
                 "multiclass": {"objective": "multi:softprob", "eval_metric": "mlogloss"}}


def xgb_params(p: dict[str, Any], counts: dict[str, int], task: str = "binary") -> dict[str, Any]:
    """The estimator's params from the train section: ``objective`` and ``eval_metric`` ``auto`` are the
    task's (``TASK_DEFAULTS``); ``scale_pos_weight`` ``auto`` balances the classes (binary only)."""
    auto = {k: (TASK_DEFAULTS[task][k] if p.get(k, "auto") in (None, "auto") else p[k]) for k in ("objective", "eval_metric")}
    if task != "binary":  # the estimator counts a multiclass label's classes itself (num_class)
        return {**_estimator_params(p), **auto}
    spw = p.get("scale_pos_weight", "auto")
    if spw == "auto":
        spw = counts["train_neg"] / max(counts["train_pos"], 1)
    return {**_estimator_params(p), **auto, "scale_pos_weight": float(spw)}


def _estimator_params(p: dict[str, Any]) -> dict[str, Any]:
    return {"n_estimators": int(p.get("n_estimators", 300)), "max_depth": int(p.get("max_depth", 6)),
            "learning_rate": float(p.get("learning_rate", 0.1)), "subsample": float(p.get("subsample", 1.0)),
            "colsample_bytree": float(p.get("colsample_bytree", 1.0)), "min_child_weight": float(p.get("min_child_weight", 1.0)),
            "reg_lambda": float(p.get("reg_lambda", 1.0)), "max_cat_to_onehot": int(p.get("max_cat_to_onehot", 4)),
            "early_stopping_rounds": int(p.get("early_stopping_rounds", 30)) or None,
            "tree_method": "hist", "device": p.get("device", "cpu"),
            "verbose": bool(p.get("verbose", False)),
            "random_state": int(p.get("seed", 42))}


class CheckpointEvery:
    """An XGBoost training callback (built lazily so this module imports without xgboost): every ``every``
    rounds the rank-0 worker writes the booster to ``directory`` as ``ckpt-NNNNNN.ubj``, at once (a local
    path or an ``s3://`` URI, ``common.storage``). ``directory`` must be reachable from the workers: the run
    folder on one machine; on a cluster, run folders on shared storage (``storage.runs: s3://...``)."""

    def __new__(cls, directory: str, every: int):
        import xgboost as xgb

        class _Checkpoint(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                from xgboost import collective
                rounds = model.num_boosted_rounds()
                if rounds % every == 0 and collective.get_rank() == 0:
                    storage.write_bytes(storage.join(directory, f"ckpt-{rounds:06d}.ubj"), bytes(model.save_raw("ubj")))
                return False
        return _Checkpoint()


class RoundProgress:
    """An XGBoost training callback for the local engine: a line with the round and the validation metric at
    most every ``seconds`` (a long training shows it is moving; a short one prints nothing)."""

    def __new__(cls, total: int, seconds: float = 10.0):
        import time

        import xgboost as xgb

        class _Progress(xgb.callback.TrainingCallback):
            last = time.monotonic()

            def after_iteration(self, model, epoch, evals_log):
                if time.monotonic() - self.last >= seconds:
                    self.last = time.monotonic()
                    figures = ", ".join(f"{m} {v[-1]:.4f}" for scores in evals_log.values() for m, v in scores.items())
                    print(f"train: round {model.num_boosted_rounds()} of at most {total}; valid {figures}", flush=True)
                return False
        return _Progress()


def latest_checkpoint(directory: str, fingerprint: str) -> str | None:
    """The newest checkpoint written for exactly this training input and these params, if any."""
    found = storage.names(directory)
    if "fingerprint.txt" not in found or storage.read_bytes(storage.join(directory, "fingerprint.txt")).decode() != fingerprint:
        return None
    ckpts = [n for n in found if n.startswith("ckpt-") and n.endswith(".ubj")]
    return storage.join(directory, ckpts[-1]) if ckpts else None


def resume_point(directory: str, fingerprint: str):
    """(booster, rounds done) from the last checkpoint of this exact input and params; (None, 0) after
    starting the checkpoint folder afresh for them."""
    latest = latest_checkpoint(directory, fingerprint)
    if latest is None:
        storage.remove_tree(directory)
        storage.write_bytes(storage.join(directory, "fingerprint.txt"), fingerprint.encode())
        return None, 0
    booster = booster_from_bytes(storage.read_bytes(latest))
    print(f"train: resuming from {latest.rsplit('/', 1)[-1]} ({booster.num_boosted_rounds()} rounds done)")
    return booster, booster.num_boosted_rounds()


def fit(df: DataFrame, spec: DatasetSpec, params: dict[str, Any], num_workers: int, callbacks: list | None = None,
        init_model=None):
    """The spark engine: xgboost.spark's ``SparkXGBClassifier`` (``SparkXGBRegressor``) on ``df`` with ``num_workers`` barrier tasks
    (``common.xgb_spark``: the library's fit, with its crash on one-sided batches fixed and without its
    training-set evaluation); ``init_model`` continues boosting from a checkpoint."""
    extra = {"callbacks": callbacks} if callbacks else {}
    if init_model is not None:
        extra["xgb_model"] = init_model
    if spec.task != "regression":  # SparkXGBClassifier sets the objective from the label's classes, refuses a set one
        params = {k: v for k, v in params.items() if k != "objective"}
    return xgb_spark.fit_estimator(df, spec.task, features_col=spec.features.names, label_col=spec.label.name,
                                validation_indicator_col=VALID_COL, weight_col="weight", num_workers=num_workers,
                                feature_types=feature_types(spec), missing=float("nan"), **params, **extra)


def local_rows(spark, df: DataFrame, table: str, spec: DatasetSpec, vocabularies: dict[str, list[str]] | None = None):
    """``df`` (``training_frame`` of the Delta table at ``table``, coded with ``vocabularies``) read into this
    process as one Arrow table (``xgb_local.read_rows``)."""
    data, how = xgb_local.read_rows(spark, df, table, training_rows(spec, vocabularies))
    print(f"train: local engine, {data.num_rows} rows from {how}")
    return data


def local_parts(data, spec: DatasetSpec) -> dict[str, tuple]:
    """The train and valid matrices of ``local_rows`` (``xgb_local.split``)."""
    return xgb_local.split(data, features=spec.features.names, label=spec.label.name, weight="weight", valid=VALID_COL)


def fit_local(spark, df: DataFrame, table: str, spec: DatasetSpec, params: dict[str, Any], callbacks: list | None = None,
              init_model=None, vocabularies: dict[str, list[str]] | None = None, parts: dict[str, tuple] | None = None):
    """The local engine: ``df``'s rows (``local_rows``; or ``parts``, their ``local_parts`` already made)
    fitted by plain XGBoost with every core of the local master."""
    if parts is None:
        parts = local_parts(local_rows(spark, df, table, spec, vocabularies), spec)
    return xgb_local.fit(parts, task=spec.task, feature_types=feature_types(spec), params=params, callbacks=callbacks, init_model=init_model,
                         nthread=local_cores(spark.sparkContext.master) or os.cpu_count() or 1)


def trained_on(booster) -> str:
    """The device xgboost trained on ('cpu', 'cuda:0', ...): the worker's booster config comes back with the
    model, so this is xgboost's own record, not the requested ``device``."""
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"]


def run(ctx: StepContext) -> None:
    from jobs.common.spark import concurrently, get_spark
    spec, p = ctx.dataset, ctx.step_params()
    requested = p.get("num_workers", "auto")
    engine = resolve_engine(p.get("engine"), ctx.settings.spark_master)
    spark = get_spark(training_settings(ctx.settings, requested) if engine == "spark" else ctx.settings, "train")
    parts = None
    if engine == "local":  # the rows are read into this process anyway: their class counts come from there
        df, vocabularies = pinned_training_frame(spark, ctx)
        rows = local_rows(spark, df, ctx.table("training_set"), spec, vocabularies)
        counts = class_balance_rows(rows, spec.label.name, spec.task, spec.label.classes)
        check_trainable(counts, f"training_set cutoff_ds={ctx.ds}")
        parts = local_parts(rows, spec)
        del rows
    else:
        df, counts, vocabularies = load_training_frame(spark, ctx)
    tuned = tuned_params(ctx.run_dir, ctx.reads["training_set"])
    if tuned:
        print(f"train: tuned params from the tune step: {tuned}")
    params = xgb_params({**p, **(tuned or {})}, counts, spec.task)
    workers = resolve_workers(requested, spark, params["device"]) if engine == "spark" else 1
    # resumable: a retried task continues from the last checkpoint of the same input and params
    ckpt_dir = storage.join(ctx.run_uri, "model", "checkpoints")  # the workers write there: the root, not a copy
    fingerprint = hashlib.sha256(json.dumps([params, spec.features.names, ctx.reads["training_set"]],
                                            sort_keys=True, default=str).encode()).hexdigest()
    init, done = resume_point(ckpt_dir, fingerprint)
    every = int(p.get("checkpoint_every", 25))
    remaining = {**params, "n_estimators": max(params["n_estimators"] - done, 0)}

    def fit_model():
        if remaining["n_estimators"] == 0:
            return _BoosterModel(init), params["device"]  # a loaded checkpoint's config names no device
        callbacks = [CheckpointEvery(ckpt_dir, every)] if every else []
        if engine == "local":
            callbacks.append(RoundProgress(params["n_estimators"]))
            model = fit_local(spark, df, ctx.table("training_set"), spec, remaining, callbacks, init, vocabularies, parts)
        else:
            model = fit(df, spec, remaining, workers, callbacks, init)
        return model, trained_on(model.get_booster())
    window = train_window(spark, ctx).localCheckpoint(eager=True)
    summaries = (partial(fit_baseline, window, ctx, p), partial(fit_profile, window, ctx, p))
    if engine == "local":  # the fit runs in this process: the Spark jobs of the baseline and profile run beside it
        (model, device), baseline, profile = concurrently(fit_model, *summaries)
    else:  # the fit's barrier stage takes every task slot of the cluster: nothing runs beside it
        model, device = fit_model()
        baseline, profile = concurrently(*summaries)
    path, booster = save_booster(model, spec, ctx.run_dir / "model")
    storage.remove_tree(ckpt_dir)
    best = booster.attr("best_iteration")
    doc = {"artifact": path.name, "sha256": sha256_file(path), "format": "ubj", "engine": engine, "num_workers": workers,
           "trained_on": device, "params": params, "counts": counts, "feature_names": spec.features.names,
           "feature_types": feature_types(spec),
           "best_iteration": int(best) if best is not None else None, "best_score": booster.attr("best_score"),
           "num_boosted_rounds": booster.num_boosted_rounds(), "resumed_from_round": done, "label": spec.label.name,
           "tuned": tuned, "baseline": baseline, "profile": profile, "vocabularies": vocabularies or None,
           "classes": list(spec.label.classes) or None}
    write_json_atomic(ctx.run_dir / "model" / "train.json", doc)
    ctx.counts.update({"rows": counts, "sha256": doc["sha256"], "best_iteration": doc["best_iteration"],
                       "num_boosted_rounds": doc["num_boosted_rounds"]})
    ctx.rows = sum(v for v in counts.values() if isinstance(v, int))  # multiclass: beside its per-class dicts
    ctx.figure = (f"{doc['num_boosted_rounds']} rounds (best {doc['best_iteration']}), valid {params['eval_metric']} "
                  f"{float(doc['best_score']):.4f}" if doc["best_score"] is not None else f"{doc['num_boosted_rounds']} rounds")
    on = (f"{workers} Spark worker" + ("s" if workers != 1 else "") if engine == "spark" else "the local engine") \
        + (f" ({device})" if device != "cpu" else "")
    print(f"train {spec.name} cutoff {ctx.ds}: {doc['num_boosted_rounds']} rounds (best {doc['best_iteration']}, "
          f"valid {params['eval_metric']} {doc['best_score']}) on {on} -> {path} sha256 {doc['sha256'][:12]}; "
          f"baseline: label mean per {baseline['segment'] or 'nothing (one mean)'}, overall {_figures(baseline['overall'])}")


def _figures(v: float | list[float]) -> str:
    return ", ".join(f"{x:.4f}" for x in v) if isinstance(v, list) else f"{v:.4f}"


def baseline_segment(spec: DatasetSpec, value: Any) -> str | None:
    """``train.baseline.segment``: one of the spec's slice attributes, ``auto`` (its first slice), or null
    (one overall rate). Never a sensitive attribute: a per-group prior would score people by that group."""
    if value in (None, "none"):
        return None
    if value == "auto":
        return spec.slices[0] if spec.slices else None
    if value not in spec.slices:
        raise ConfigError(f"params train.baseline.segment: '{value}' is not one of {spec.path}'s slices "
                          f"{list(spec.slices)} (sensitive attributes cannot segment the baseline)")
    return str(value)


def train_window(spark, ctx: StepContext):
    """This cutoff's train-window rows of the training-set version train read (the baseline's and the
    reference profile's input)."""
    return (delta_io.read_pinned(spark, ctx.table("training_set"), version=ctx.reads["training_set"])
            .where((F.col("cutoff_ds") == F.lit(ctx.ds)) & (F.col("split") == "train")))


def fit_baseline(rows, ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    """The baseline published with the model (``jobs.model``'s ``segment_prior``): the label rate of the
    train window ``rows`` per segment. Returns its train.json entry."""
    from jobs.features import attr_col
    spec, cfg = ctx.dataset, dict(p.get("baseline") or {})
    segment = baseline_segment(spec, cfg.get("segment", "auto"))
    prior = fit_prior(rows, spec.label.name, attr_col(segment) if segment else None, float(cfg.get("smoothing", 100)),
                      list(spec.label.classes) or None)
    path = save_prior(prior, ctx.run_dir / "model")
    return {"artifact": path.name, "sha256": sha256_file(path), "kind": prior["kind"], "segment": segment,
            "overall": prior["overall"]}


def fit_profile(rows, ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    """The reference profile of the train window ``rows`` (``jobs.drift``: every feature's bins, counts and
    nulls), published with the model for the monitoring of later days. Returns its train.json entry."""
    from jobs.drift import profile
    spec = ctx.dataset
    numeric = [n for n in spec.features.names if n not in spec.features.categorical]
    prof = profile(rows, numeric, list(spec.features.categorical), bins=int(p.get("profile_bins", 10)))
    path = ctx.run_dir / "model" / PROFILE_FILE
    write_json_atomic(path, prof)
    return {"artifact": path.name, "sha256": sha256_file(path), "rows": next(iter(prof.values()))["rows"] if prof else 0}


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
