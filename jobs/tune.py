"""Tune: an optional Optuna search for the training hyperparameters, between features and train.

Off in the nightly default (``tune.enabled: false``: the step only records that, in a second); on for
``make tune``, a DAG run triggered with ``{"tune": true}`` or ``dvc exp run -S tune.enabled=true``.

Trials train single-node XGBoost on the driver, on a seeded sample of this cutoff's train window (at most
``max_train_rows``) scored on its valid window, with the train step's own params under the sampled ones, and
report the valid metric every round so a median pruner stops bad trials early. The final model is still
trained on all rows by ``jobs.train`` on Spark, which reads ``<run>/tune/best_params.json`` (only when it was
tuned on the same training-set version). Choice: trials on a bounded driver sample instead of one Spark fit
per trial, whose fixed cost would dominate every trial (bench/RESULTS.md).

The study is persistent (SQLite under the runs folder, one study per dataset, ds, training-set version and
search space): a search that was interrupted resumes where it stopped, counting finished trials, so
``n_trials`` is the total of the study, not of one invocation.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from jobs.common.cli import StepContext, run_step
from jobs.common.errors import ConfigError, DataError
from jobs.common.files import write_json_atomic
from jobs.common.storage import is_remote

KINDS = ("int", "float", "categorical")


def check_space(space: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The search space from params.yaml: ``name: {type: int|float, low, high[, log]}`` or
    ``{type: categorical, choices: [...]}``. Refuse anything else, naming the parameter."""
    if not space:
        raise ConfigError("tune.space is empty: nothing to search")
    for name, d in space.items():
        kind = (d or {}).get("type")
        if kind not in KINDS:
            raise ConfigError(f"tune.space.{name}: type must be one of {KINDS}, got {kind!r}")
        if kind == "categorical" and not d.get("choices"):
            raise ConfigError(f"tune.space.{name}: a categorical needs 'choices'")
        if kind != "categorical" and not ("low" in d and "high" in d and d["low"] < d["high"]):
            raise ConfigError(f"tune.space.{name}: needs low < high, got {d}")
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, d in space.items():
        if d["type"] == "int":
            out[name] = trial.suggest_int(name, int(d["low"]), int(d["high"]), log=bool(d.get("log", False)))
        elif d["type"] == "float":
            out[name] = trial.suggest_float(name, float(d["low"]), float(d["high"]), log=bool(d.get("log", False)))
        else:
            out[name] = trial.suggest_categorical(name, list(d["choices"]))
    return out


def booster_params(params: dict[str, Any]) -> dict[str, Any]:
    """The train step's (scikit-learn style) params as ``xgb.train`` params."""
    skip = {"n_estimators", "early_stopping_rounds", "verbose"}
    return {**{k: v for k, v in params.items() if k not in skip},
            "nthread": os.cpu_count() or 1}


MAXIMIZED = ("auc", "aucpr", "pre", "ndcg", "map")  # xgboost's eval metrics where higher is better; the rest are losses


def pruning_callback(trial, metric: str):
    """Report the valid metric to Optuna each round; stop training when the pruner says so (the caller then
    raises TrialPruned: an exception inside XGBoost's loop would lose the reported steps' context)."""
    import xgboost as xgb

    class _Prune(xgb.callback.TrainingCallback):
        pruned = False

        def after_iteration(self, model, epoch, evals_log):
            trial.report(float(evals_log["valid"][metric][-1]), epoch)
            self.pruned = trial.should_prune()
            return self.pruned
    return _Prune()


def search(train, valid, base: dict[str, Any], space: dict[str, Any], storage: str, study_name: str,
           n_trials: int, max_rounds: int, early_stopping: int, warmup_rounds: int, timeout_s: float | None = None,
           seed: int = 42):
    """Run (or resume) the study until it holds ``n_trials`` finished trials. ``train``/``valid`` are
    ``xgb.DMatrix``; ``base`` the train step's params that the sampled ones override."""
    import optuna
    import xgboost as xgb

    metric = base.get("eval_metric", "aucpr")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna.storages.RDBStorage(storage)
    direction = "maximize" if metric.split("@")[0] in MAXIMIZED else "minimize"
    study = optuna.create_study(study_name=study_name, storage=rdb, load_if_exists=True, direction=direction,
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup_rounds))
    # one process per study (one Airflow task per ds): a trial still RUNNING was cut off by a kill
    study_id = rdb.get_study_id_from_name(study_name)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        rdb.set_trial_state_values(rdb.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                   optuna.trial.TrialState.FAIL)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))

    def objective(trial):
        params = booster_params({**base, **suggest(trial, space)})
        cb = pruning_callback(trial, metric)
        booster = xgb.train(params, train, num_boost_round=max_rounds, evals=[(valid, "valid")],
                            early_stopping_rounds=early_stopping, callbacks=[cb], verbose_eval=False)
        if cb.pruned:
            raise optuna.TrialPruned()
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(booster.best_score)

    if n_trials > done:
        study.optimize(objective, n_trials=n_trials - done, timeout=timeout_s, gc_after_trial=True)
    return study, done


def sample_frames(df, max_train: int, max_valid: int, seed: int):
    """A seeded sample of each window, collected to the driver as pandas (bounded by the max rows)."""
    from pyspark.sql import functions as F

    from jobs.common.spark import bounded_sample
    from jobs.train import VALID_COL
    return [bounded_sample(df.where(F.col(VALID_COL) == F.lit(is_valid)), cap, seed).toPandas()
            for is_valid, cap in ((False, max_train), (True, max_valid))]


def dmatrix(pdf, spec, label: str):
    from jobs.model import feature_matrix, feature_types
    return feature_matrix(pdf, spec.features.names, feature_types(spec), label=pdf[label], weight=pdf["weight"])


def study_name(ctx: StepContext, space: dict[str, Any], training_set_version: int) -> str:
    key = hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()[:10]
    return f"{ctx.dataset.name}-ds={ctx.ds.isoformat()}-v{training_set_version}-{key}"


def study_storage(value: str | None, runs: str, dataset: str) -> str:
    """The Optuna study's database URL: ``tune.storage`` when it is a URL (``postgresql://...``, one that
    every host running tune reaches), else a SQLite file (that path, or ``<runs>/<dataset>/tune.db``). With
    run folders on S3 a file on one host's disk would be another study on each host: refused."""
    if value and "://" in str(value):
        return str(value)
    if value is None and is_remote(runs):
        raise ConfigError(f"params tune.storage: storage.runs is {runs}, shared by every host, and the Optuna "
                          "study must be too: set tune.storage to a database URL they all reach "
                          "(e.g. postgresql://host/optuna)")
    path = Path(value or Path(runs) / dataset / "tune.db")
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def run(ctx: StepContext) -> None:
    p = ctx.step_params()
    from jobs.train import tuned_path
    out = tuned_path(ctx.run_dir)
    if not p.get("enabled", False):
        write_json_atomic(out, {"enabled": False, "note": "tune.enabled is false: train uses params.yaml as is"})
        print("tune: disabled (tune.enabled: false); train uses its params as is")
        ctx.figure = "off: train uses params.yaml as is (make tune searches)"
        return
    from jobs import train
    from jobs.common.spark import get_spark
    spec, label = ctx.dataset, ctx.dataset.label.name
    space = check_space(p.get("space") or {})
    spark = get_spark(ctx.settings, "tune")
    df, counts, _ = train.load_training_frame(spark, ctx)  # the learned categoricals coded as train codes them
    base = train.xgb_params(ctx.params.get("train", {}), counts, spec.task)
    if spec.task == "multiclass":  # xgb.train, unlike the estimators, is told how many classes there are
        base["num_class"] = len(spec.label.classes)
    seed = int(p.get("seed", base["random_state"]))
    tr, va = sample_frames(df, int(p.get("max_train_rows", 200_000)), int(p.get("max_valid_rows", 100_000)), seed)
    if spec.task == "binary" and (tr[label].nunique() < 2 or va[label].nunique() < 2):
        raise DataError(f"tune: the sampled train ({len(tr)} rows) or valid ({len(va)} rows) window has one class; "
                        "raise tune.max_train_rows / max_valid_rows")
    storage = study_storage(p.get("storage"), ctx.settings.runs, ctx.dataset.name)
    name = study_name(ctx, space, ctx.reads["training_set"])
    study, resumed = search(dmatrix(tr, spec, label), dmatrix(va, spec, label), base, space, storage, name,
                            n_trials=int(p.get("n_trials", 30)), max_rounds=int(p.get("max_rounds", base["n_estimators"])),
                            early_stopping=int(p.get("early_stopping_rounds", 30)),
                            warmup_rounds=int(p.get("pruning_warmup_rounds", 20)),
                            timeout_s=p.get("timeout_s"), seed=seed)
    import optuna
    states = [t.state for t in study.trials]
    doc = {"enabled": True, "study": name, "storage": storage, "metric": base["eval_metric"],
           "training_set_version": ctx.reads["training_set"], "best_value": study.best_value,
           "best_params": study.best_params, "best_trial": study.best_trial.number,
           "best_iteration": study.best_trial.user_attrs.get("best_iteration"),
           "trials": {"complete": states.count(optuna.trial.TrialState.COMPLETE),
                      "pruned": states.count(optuna.trial.TrialState.PRUNED),
                      "failed": states.count(optuna.trial.TrialState.FAIL), "finished_before_this_run": resumed},
           "sample_rows": {"train": len(tr), "valid": len(va)}, "space": space}
    write_json_atomic(out, doc)
    ctx.counts.update({"best_value": doc["best_value"], "trials": doc["trials"]})
    ctx.rows, ctx.figure = len(tr), f"best valid {doc['metric']} {doc['best_value']:.4f} ({doc['trials']['complete']} trials complete)"
    print(f"tune {spec.name} cutoff {ctx.ds}: best valid {doc['metric']} {doc['best_value']:.4f} "
          f"(trial {doc['best_trial']}, {doc['trials']}) -> {out}")


def main(argv: list[str] | None = None) -> None:
    run_step("tune", run, argv, __doc__)


if __name__ == "__main__":
    main()
