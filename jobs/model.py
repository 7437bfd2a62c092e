"""Model: the one place a model artifact is saved, loaded and verified, its feature matrix built and its
scores computed. Train, tune, evaluate and score use it; nothing else opens a model file.

Two kinds of model share one contract (``Model``: verified bytes, the columns it needs, ``predict``):

- ``xgboost``: the trained booster, XGBoost's own UBJ format with its feature names and types (never
  pickled), scored on the executors from float32 features, NaN as missing;
- ``segment_prior``: the baseline published with every model, the label rate of the training window per
  value of one slice column (``attr_<segment>``), smoothed towards the overall rate, that overall rate for
  an unseen, null or absent segment. It needs no feature at all, so it can serve a day on which the
  features cannot be trusted (the end of the scoring fallback chain).

Every load checks the artifact's sha256 against the one its manifest (or train.json) recorded."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.config import DatasetSpec
from jobs.common.errors import IntegrityError
from jobs.common.files import artifact_path, write_json_atomic

MODEL_FILE = "model.ubj"
BASELINE_FILE = "baseline.json"
KINDS = ("xgboost", "segment_prior")


class ArtifactError(IntegrityError):
    """A model artifact is missing or is not the one its manifest recorded (checksum mismatch)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason  # artifact_missing | checksum_mismatch: the scoring reason code


@dataclasses.dataclass(frozen=True)
class Model:
    """A verified model in memory: its kind, artifact bytes and sha256, the features it reads (in order, with
    XGBoost's types), and where it came from (a registry version, or a run folder)."""
    kind: str
    data: bytes
    sha256: str
    feature_names: list[str]
    feature_types: list[str]
    version: str | None = None
    vocabularies: dict[str, list[str]] | None = None  # learned categoricals: the values coded 0..n-1 (n: any other)
    classes: list[str] | None = None  # multiclass: the label's classes, the order of its probabilities

    def required_columns(self) -> list[str]:
        """The columns a frame must hold (non-null somewhere) for this model to score it."""
        return list(self.feature_names) if self.kind == "xgboost" else []

    def booster(self):
        return booster_from_bytes(self.data)

    def prior(self) -> dict[str, Any]:
        return json.loads(self.data)


# ---------------------------------------------------------------- the feature matrix
def feature_types(spec: DatasetSpec) -> list[str]:
    """XGBoost feature types: 'c' for the declared categoricals (integer codes), 'q' otherwise."""
    return ["c" if n in spec.features.categorical else "q" for n in spec.features.names]


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


def learn_vocabularies(rows: DataFrame, spec: DatasetSpec) -> dict[str, list[str]]:
    """The vocabulary of every learned categorical (``features.categorical.<name>: {top, min_count}``) from
    ``rows`` (the train window): its values seen at least ``min_count`` times, the ``top`` most frequent
    (ties by value), most frequent first. One small aggregation per column."""
    out = {}
    for name, rule in spec.features.learned.items():
        counts = (rows.where(F.col(name).isNotNull()).groupBy(F.col(name).cast("string").alias("v")).count()
                  .where(F.col("count") >= rule.min_count).orderBy(F.desc("count"), "v"))
        out[name] = [r["v"] for r in (counts.limit(rule.top) if rule.top else counts).collect()]
    return out


def encode(df: DataFrame, vocabularies: dict[str, list[str]] | None) -> DataFrame:
    """``df`` with each learned categorical's raw value replaced by its code in ``vocabularies`` (the position
    of the value; any other value and null: the vocabulary's length), as the model was trained."""
    for name, vocab in (vocabularies or {}).items():
        if name in df.columns:
            pos = F.array_position(F.array(*[F.lit(v) for v in vocab]), F.col(name).cast("string")) if vocab else F.lit(0)
            df = df.withColumn(name, F.coalesce(F.nullif(pos, F.lit(0)) - 1, F.lit(len(vocab))).cast("int"))
    return df


def encode_arrow(vocabularies: dict[str, list[str]] | None, columns: dict[str, Any]) -> dict[str, Any]:
    """``encode`` for pyarrow expressions over a training set's files (``xgb_local.FileRows``): the same codes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    out = dict(columns)
    for name, vocab in (vocabularies or {}).items():
        if name in out:
            out[name] = pc.coalesce(pc.index_in(out[name], value_set=pa.array(vocab, type=pa.string())),
                                    pc.scalar(pa.scalar(len(vocab), type=pa.int32())))
    return out


# ---------------------------------------------------------------- saving and loading
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


def save_prior(prior: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / BASELINE_FILE
    write_json_atomic(path, prior)
    return path


def read_verified(path: Path | None, sha256: str, what: str) -> bytes:
    """The bytes of ``path`` if they hash to ``sha256``; else ArtifactError naming the file and both digests."""
    if path is None or not Path(path).exists():
        raise ArtifactError(f"{what}: artifact {path or ''} is missing", "artifact_missing")
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"{what}: {path} has sha256 {actual[:12]}, its manifest recorded {sha256[:12]}",
                            "checksum_mismatch")
    return data


def from_run(run_dir: Path) -> Model:
    """The model a run's train step wrote (``model/train.json``), verified."""
    doc = json.loads((run_dir / "model" / "train.json").read_text())
    art = artifact_path(run_dir, doc)
    return Model("xgboost", read_verified(art, doc["sha256"], f"run {run_dir}"), doc["sha256"],
                 doc["feature_names"], doc["feature_types"], vocabularies=doc.get("vocabularies"), classes=doc.get("classes"))


def baseline_from_run(run_dir: Path) -> Model | None:
    """The baseline the run's train step wrote beside the model, verified (None: the run has none)."""
    doc = json.loads((run_dir / "model" / "train.json").read_text()).get("baseline")
    if not doc:
        return None
    path = run_dir / "model" / doc["artifact"]
    return Model(doc["kind"], read_verified(path, doc["sha256"], f"baseline of run {run_dir}"), doc["sha256"], [], [])


def from_registry(registry, name: str, version: str, which: str = "model") -> Model:
    """A registry version's model (``which='model'``) or its baseline (``'baseline'``), verified against the
    version's manifest. ArtifactError when the file is missing or altered; RegistryError when the version
    itself is (or has no baseline)."""
    from jobs.registry import RegistryError
    manifest = registry.manifest(name, version)
    if which == "model":
        entry = {"artifact": manifest["artifact"], "sha256": manifest["sha256"], "kind": "xgboost"}
    else:
        entry = manifest.get("baseline")
        if not entry:
            raise RegistryError(f"{name}/{version} was published without a baseline")
    what = f"model '{name}' version {version}" + (" (baseline)" if which != "model" else "")
    data = read_verified(registry.artifact_file(name, version, entry["artifact"]), entry["sha256"], what)
    names, types = (manifest["feature_names"], manifest["feature_types"]) if entry["kind"] == "xgboost" else ([], [])
    vocab = manifest.get("vocabularies") if entry["kind"] == "xgboost" else None
    return Model(entry["kind"], data, entry["sha256"], names, types, version, vocab, manifest.get("classes"))


def profile_from_registry(registry, name: str, version: str) -> dict[str, Any]:
    """The reference profile published with a registry version (``jobs.drift``: the train window's bins and
    counts per feature), verified against the manifest. ArtifactError when the file is missing or altered;
    RegistryError when the version was published without one."""
    from jobs.registry import RegistryError
    entry = registry.manifest(name, version).get("profile")
    if not entry:
        raise RegistryError(f"{name}/{version} was published without a reference profile")
    return json.loads(read_verified(registry.artifact_file(name, version, entry["artifact"]), entry["sha256"],
                                    f"model '{name}' version {version} (reference profile)"))


# ---------------------------------------------------------------- predicting
def predict(df: DataFrame, model: Model, out: str = "score") -> DataFrame:
    """``df`` with the model's probability added as ``out`` (a double). XGBoost scores on the executors (the
    booster is broadcast as bytes, each Arrow batch predicted in place from float32 features); the prior is a
    column expression."""
    if model.kind == "segment_prior":
        prior = model.prior()
        if prior.get("classes"):
            probs = F.array(*[prior_column(p, df.columns) for p in prior["per_class"]])
            return with_classes(df.withColumn(PROBABILITIES, probs), prior["classes"], out)
        return df.withColumn(out, prior_column(prior, df.columns))
    if model.kind != "xgboost":
        raise IntegrityError(f"model kind '{model.kind}' is not one of {KINDS}")
    from pyspark.sql.types import DoubleType, StructField, StructType
    if model.vocabularies:  # scored on the codes the model learned, the raw values kept in the output
        raw = {n: f"__raw_{n}" for n in model.vocabularies if n in df.columns}
        coded = encode(df.select("*", *[F.col(n).alias(r) for n, r in raw.items()]), model.vocabularies)
        scored = predict(coded, dataclasses.replace(model, vocabularies=None), out)
        added = [c for c in scored.columns if c not in coded.columns]
        return scored.drop(*raw).select(*[F.col(raw[c]).alias(c) if c in raw else F.col(c) for c in df.columns], *added)
    from pyspark.sql.types import ArrayType
    bc = df.sparkSession.sparkContext.broadcast(model.data)
    col, kind = (PROBABILITIES, ArrayType(DoubleType())) if model.classes else (out, DoubleType())
    schema = StructType([*df.schema.fields, StructField(col, kind)])  # df.schema.add would mutate df
    names, types = model.feature_names, model.feature_types

    def batches(it):
        booster = booster_from_bytes(bc.value)
        for pdf in it:
            if len(pdf):
                got = predict_pandas(booster, pdf, names, types)
                yield pdf.assign(**{col: [r.tolist() for r in got] if got.ndim == 2 else got})

    scored = df.mapInPandas(batches, schema)
    return with_classes(scored, model.classes, out) if model.classes else scored


PROBABILITIES = "probabilities"  # a multiclass model's output: one probability per class, in the model's order


def with_classes(df: DataFrame, classes: list[str], out: str = "score") -> DataFrame:
    """A multiclass frame with ``probabilities``: ``predicted_class`` (the most probable class; ties to the
    first) and ``out``, its probability."""
    top = F.array_max(F.col(PROBABILITIES))
    return (df.withColumn(out, top)
              .withColumn("predicted_class", F.element_at(F.array(*map(F.lit, classes)), F.array_position(F.col(PROBABILITIES), top).cast("int"))))


def predict_pandas(booster, pdf, names: list[str], types: list[str]):
    """Probabilities (float64) of the rows of ``pdf`` (multiclass: rows x classes): XGBoost's
    ``inplace_predict`` on the float32 feature matrix, categoricals as their integer codes (the booster's own
    feature types say which)."""
    import numpy as np
    if booster.feature_types != types:  # a booster saved without them (save_booster always sets them)
        booster.feature_names, booster.feature_types = names, types
    x = pdf[names].to_numpy(dtype=np.float32, na_value=np.nan)
    return booster.inplace_predict(x, missing=np.nan).astype("float64")


def prior_column(prior: dict[str, Any], columns: list[str]):
    """The segment prior as a Spark expression: the rate of the row's segment, else the overall rate."""
    overall = F.lit(float(prior["overall"]))
    if not prior.get("column") or prior["column"] not in columns or not prior.get("rates"):
        return overall
    rates = F.create_map(*[x for k, v in sorted(prior["rates"].items()) for x in (F.lit(k), F.lit(float(v)))])
    return F.coalesce(rates[F.col(prior["column"]).cast("string")], overall)


def fit_prior(df: DataFrame, label: str, column: str | None, smoothing: float = 100.0,
              classes: list[str] | None = None) -> dict[str, Any]:
    """The ``segment_prior`` of ``df``'s labelled rows (a ``weight`` column, if any, weighs them): per value of
    ``column``, (positives + smoothing x overall) / (rows + smoothing), so a small segment stays near the
    overall rate. One aggregation pass. Multiclass (``classes``; the label is the class index): one such
    prior per class (``per_class``), whose rates sum to 1 in every segment."""
    if classes:
        per = [fit_prior(df.withColumn(label, (F.col(label) == i).cast("double")), label, column, smoothing)
               for i in range(len(classes))]
        return {"kind": "segment_prior", "column": column, "classes": list(classes), "per_class": per,
                "overall": [p["overall"] for p in per], "smoothing": smoothing, "rows": per[0]["rows"], "label": label}
    w = F.coalesce(F.col("weight"), F.lit(1.0)) if "weight" in df.columns else F.lit(1.0)
    y = F.col(label).cast("double")
    rows = (df.where(F.col(label).isNotNull())
            .groupBy(F.col(column).cast("string").alias("segment") if column else F.lit(None).alias("segment"))
            .agg(F.sum(w * y).alias("pos"), F.sum(w).alias("n"), F.count(F.lit(1)).alias("rows")).collect())
    pos, n = sum(r["pos"] for r in rows), sum(r["n"] for r in rows)
    if not n:
        raise IntegrityError("the baseline's training rows are empty (no labelled row)")
    overall = pos / n
    rates = {r["segment"]: (r["pos"] + smoothing * overall) / (r["n"] + smoothing) for r in rows
             if column and r["segment"] is not None}
    return {"kind": "segment_prior", "column": column, "rates": rates, "overall": overall, "smoothing": smoothing,
            "rows": {str(r["segment"]): r["rows"] for r in rows}, "label": label}


