"""Typed configuration: environment settings (conf/*.yaml), dataset specs (conf/datasets/*.yaml) and
experiment parameters (params.yaml). Loading validates early and names the file and key that is wrong."""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.common.errors import ConfigError
from jobs.common.sqlexpr import referenced_columns

REPO_ROOT = Path(__file__).resolve().parents[2]
TYPES = {"string", "int", "long", "double", "boolean", "timestamp", "date"}


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    if not p.exists():
        raise ConfigError(f"{path}: file not found")
    with p.open() as f:
        text = os.path.expandvars(f.read())  # ${VAR} from the environment
    unset = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)))
    if unset:
        raise ConfigError(f"{path}: environment variable(s) {', '.join(unset)} not set (the file uses ${{...}})")
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _req(d: dict, key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing required key '{key}'")
    return d[key]


# ---------------------------------------------------------------- environment settings
@dataclass(frozen=True)
class Settings:
    spark_master: str
    spark_packages: tuple[str, ...]
    spark_conf: dict[str, str]
    landing: str
    lake: str
    runs: str
    gx: str
    registry: str
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "Settings":
        d = load_yaml(path)
        spark, storage, reg = d.get("spark", {}), _req(d, "storage", str(path)), d.get("registry", {})
        return cls(
            spark_master=spark.get("master", "local[*]"),
            spark_packages=tuple(spark.get("packages", [])),
            spark_conf={k: str(v) for k, v in (spark.get("conf") or {}).items()},
            landing=_resolve(_req(storage, "landing", f"{path}: storage")),
            lake=_resolve(_req(storage, "lake", f"{path}: storage")),
            runs=_resolve(_req(storage, "runs", f"{path}: storage")),
            gx=_resolve(storage.get("gx", "state/gx")),
            registry=_resolve(reg.get("uri", "state/registry")),
            source=str(path),
        )


def _resolve(p: str) -> str:
    """Relative local paths are relative to the repository root, so every caller agrees on them."""
    if "://" in p or Path(p).is_absolute():
        return p
    return str(REPO_ROOT / p)


# ---------------------------------------------------------------- dataset spec
def dataset_dirs() -> list[Path]:
    """Where dataset specs live: conf/datasets, then the folders named in TRAINYARD_DATASETS_DIR
    (os.pathsep-separated; e.g. a test's own specs). The DAG file lists the same folders."""
    extra = [Path(p) for p in os.environ.get("TRAINYARD_DATASETS_DIR", "").split(os.pathsep) if p]
    return [REPO_ROOT / "conf" / "datasets", *extra]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    format: str | None = None
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None  # allowed values (case-sensitive after standardisation)
    known_at: str | None = None  # a timestamp column: when this value became known (default: the event time)


@dataclass(frozen=True)
class Enrichment:
    path: str
    key: str
    columns: dict[str, str]


@dataclass(frozen=True)
class Source:
    name: str
    path: str
    format: str
    key: str
    event_time: str
    columns: tuple[Column, ...]
    options: dict[str, str] = field(default_factory=dict)
    enrich: tuple[Enrichment, ...] = ()
    max_quarantine_rate: float = 0.05
    allow_empty: bool = False   # a day with no files is normal (e.g. a label feed), not an error
    dedup_lookback_days: int | None = None  # how far back a key is looked up in silver (None: all of it)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class LabelSpec:
    name: str
    column: str | None = None            # inline label: a column of the examples source
    positive_values: tuple[str, ...] = ()
    expr: str | None = None              # inline label: a Spark SQL expression over the examples' columns
    source: str | None = None            # label feed: a source whose rows mark positives
    source_key: str | None = None
    known_at: str | None = None          # column of the label feed: when the label became known
    maturity_days: int = 0               # an example with no positive label is negative only after this
    classes: tuple[str, ...] = ()        # multiclass: the label's values, in order (the model's class indexes)

    @property
    def inline_column(self) -> str | None:
        """The column that carries an inline label's value beside the example (features, scoring): the label
        column itself, or ``<name>__value`` for an expression; None for a label feed."""
        return self.column or (f"{self.name}__value" if self.expr else None)


@dataclass(frozen=True)
class Aggregate:
    name: str
    entity: tuple[str, ...]
    agg: str
    window: str
    column: str | None = None


@dataclass(frozen=True)
class Recency:
    entity: tuple[str, ...]
    window: str  # how far back the last event is looked for; none in the window: null


@dataclass(frozen=True)
class AsOf:
    """A time-varying source joined onto each example as of its event time t: per key, the latest row of
    ``source`` with event time strictly before t and at most ``max_age`` old, that had landed by the
    example's landing day; its ``columns`` (source column -> feature name) are numeric features, null when
    there is no such row."""
    name: str
    source: str
    keys: dict[str, str]        # example column -> source column
    max_age: str                # <number><s|m|h|d>
    columns: dict[str, str]     # source column -> feature name


NUMERIC_TYPES = ("int", "long", "double", "boolean")
TASKS = ("binary", "regression", "multiclass")  # binary: a 0/1 label; regression: a number; multiclass: one of label.classes


@dataclass(frozen=True)
class Vocab:
    """A categorical's vocabulary learned from the train window of each training set (never from the valid
    or holdout window, whose labels judge the model): the ``top`` most frequent values seen at least
    ``min_count`` times. Stored with the model; scoring encodes with the model's own."""
    top: int | None = None
    min_count: int = 1


VOCAB_KEYS = ("top", "min_count", "from")


@dataclass(frozen=True)
class FeatureSpec:
    derived: dict[str, str]
    aggregates: tuple[Aggregate, ...]
    ratios: dict[str, tuple[str, str]]
    recency: dict[str, Recency]
    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...] | Vocab]  # a fixed vocabulary, or one learned per training set
    as_of: tuple[AsOf, ...] = ()

    @property
    def learned(self) -> dict[str, Vocab]:
        """The categoricals whose vocabulary each training set learns (their features hold the raw values)."""
        return {k: v for k, v in self.categorical.items() if isinstance(v, Vocab)}

    @property
    def names(self) -> list[str]:
        """Model inputs, in a fixed order (the single source of feature names)."""
        return (list(self.numeric) + list(self.derived) + [a.name for a in self.aggregates] + list(self.ratios)
                + list(self.recency) + [n for j in self.as_of for n in j.columns.values()] + list(self.categorical))


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    origin: dict[str, Any]
    sources: dict[str, Source]
    examples: str
    entity: str
    label: LabelSpec
    sensitive: tuple[str, ...]
    slices: tuple[str, ...]
    features: FeatureSpec
    path: str = ""
    expectations: str = ""  # the GX suites' prefix: expectations/<prefix>_silver_<source>.json (default: name)
    params: dict[str, Any] = field(default_factory=dict)  # this dataset's overrides of params.yaml, by section
    task: str = "binary"    # one of TASKS

    @property
    def example_source(self) -> Source:
        return self.sources[self.examples]

    @classmethod
    def load(cls, name_or_path: str) -> "DatasetSpec":
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml"):
            found = [d / f"{name_or_path}.yaml" for d in dataset_dirs() if (d / f"{name_or_path}.yaml").exists()]
            path = found[0] if found else REPO_ROOT / "conf" / "datasets" / f"{name_or_path}.yaml"
        if not path.exists():
            known = sorted(p.stem for d in dataset_dirs() for p in d.glob("*.yaml"))
            raise ConfigError(f"unknown dataset '{name_or_path}': no {path} (known: {', '.join(known)})")
        return cls.from_dict(load_yaml(path), str(path))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "<dataset>") -> "DatasetSpec":
        sources = {}
        for sname, s in _req(d, "sources", where).items():
            sw = f"{where}: sources.{sname}"
            cols = []
            for c in _req(s, "columns", sw):
                ctype = _req(c, "type", f"{sw}.columns")
                if ctype not in TYPES:
                    raise ConfigError(f"{sw}: column '{c.get('name')}' has unknown type '{ctype}' (one of {sorted(TYPES)})")
                cols.append(Column(name=_req(c, "name", f"{sw}.columns"), type=ctype, nullable=c.get("nullable", True),
                                   format=c.get("format"), min=c.get("min"), max=c.get("max"),
                                   values=tuple(c["values"]) if c.get("values") else None, known_at=c.get("known_at")))
            names = [c.name for c in cols]
            for k in ("key", "event_time"):
                if _req(s, k, sw) not in names:
                    raise ConfigError(f"{sw}: {k} '{s[k]}' is not one of its columns {names}")
            sources[sname] = Source(
                name=sname, path=_req(s, "path", sw), format=s.get("format", "csv"), key=s["key"],
                event_time=s["event_time"], columns=tuple(cols), options={k: str(v) for k, v in (s.get("options") or {}).items()},
                enrich=tuple(Enrichment(path=e["path"], key=e["key"], columns=dict(e["columns"])) for e in s.get("enrich", [])),
                max_quarantine_rate=float(s.get("max_quarantine_rate", 0.05)),
                allow_empty=bool(s.get("allow_empty", False)),
                dedup_lookback_days=None if s.get("dedup_lookback_days") is None else int(s["dedup_lookback_days"]))
        lab = _req(d, "label", where)
        label = LabelSpec(name=_req(lab, "name", f"{where}: label"), column=lab.get("column"),
                          positive_values=tuple(str(v) for v in lab.get("positive_values", [])),
                          source=lab.get("source"), source_key=lab.get("source_key"), known_at=lab.get("known_at"),
                          maturity_days=int(lab.get("maturity_days", 0)), expr=lab.get("expr"),
                          classes=tuple(str(v) for v in lab.get("classes") or []))
        if sum(x is not None for x in (label.column, label.expr, label.source)) != 1:
            raise ConfigError(f"{where}: label needs exactly one of 'column' (inline, with positive_values), 'expr' "
                              f"(inline, a Spark SQL expression over the examples' columns, e.g. \"arr_delay > 15\") "
                              f"or 'source' (a label feed)")
        task = str(d.get("task", "binary"))
        if task not in TASKS:
            raise ConfigError(f"{where}: task '{task}' is not one of {list(TASKS)}")
        if task == "binary" and label.column and not label.positive_values:
            raise ConfigError(f"{where}: label.column '{label.column}' needs positive_values (or state the label as "
                              f"label.expr)")
        if task == "regression" and label.column and d.get("examples") in sources and \
                {c.name: c.type for c in sources[d["examples"]].columns}.get(label.column) not in ("int", "long", "double"):
            raise ConfigError(f"{where}: label.column '{label.column}' of a regression must be a numeric column (int, "
                              f"long, double) of the examples")
        if task == "multiclass" and (label.source or label.positive_values or len(set(label.classes)) < 2
                                     or len(set(label.classes)) != len(label.classes)):
            raise ConfigError(f"{where}: a multiclass label is one of label.classes (at least two distinct values, "
                              f"e.g. classes: [ontime, late, cancelled]) from label.column or label.expr, not a label "
                              f"feed or positive_values (got classes {list(label.classes)})")
        if label.classes and task != "multiclass":
            raise ConfigError(f"{where}: label.classes is for task: multiclass (task is {task})")
        if task == "regression" and (label.source or label.positive_values):
            raise ConfigError(f"{where}: a regression label is a number: label.column (a numeric column, no "
                              f"positive_values) or label.expr, not {'a label feed' if label.source else 'positive_values'}")
        if label.expr is not None:
            allowed = sources[_req(d, "examples", where)].column_names if d.get("examples") in sources else []
            if not str(label.expr).strip() or not referenced_columns(str(label.expr), allowed):
                raise ConfigError(f"{where}: label.expr '{label.expr}' reads none of the examples' columns {allowed}")
        if label.source and label.source not in sources:
            raise ConfigError(f"{where}: label.source '{label.source}' is not a source ({list(sources)})")
        f = d.get("features", {})
        feats = FeatureSpec(
            derived=dict(f.get("derived", {})),
            aggregates=tuple(Aggregate(name=a["name"], entity=tuple(_as_list(a["entity"])), agg=a["agg"],
                                       window=a["window"], column=a.get("column")) for a in f.get("aggregates", [])),
            ratios={k: tuple(v) for k, v in (f.get("ratios") or {}).items()},
            recency={k: _recency(k, v, where) for k, v in (f.get("recency") or {}).items()},
            numeric=tuple(f.get("numeric", [])),
            categorical={k: _categorical(k, v, where) for k, v in (f.get("categorical") or {}).items()},
            as_of=tuple(_as_of(k, v, where, sources, d.get("examples")) for k, v in (f.get("as_of") or {}).items()),
        )
        examples = _req(d, "examples", where)
        if examples not in sources:
            raise ConfigError(f"{where}: examples '{examples}' is not a source ({list(sources)})")
        return cls(name=_req(d, "name", where), origin=dict(d.get("origin", {})), sources=sources, examples=examples,
                   entity=d.get("entity", sources[examples].key), label=label, sensitive=tuple(d.get("sensitive", [])),
                   slices=tuple(d.get("slices", [])), features=feats, path=where,
                   expectations=str(d.get("expectations") or d["name"]), params=_params_section(d, where), task=task)


def _params_section(d: dict, where: str) -> dict[str, Any]:
    p = d.get("params") or {}
    if not isinstance(p, dict) or not all(isinstance(v, dict) for v in p.values()):
        raise ConfigError(f"{where}: params must map params.yaml sections to their overrides, e.g. "
                          f"{{features: {{split: {{train_days: 20}}}}, evaluate: {{gate: {{min_auc: 0.7}}}}}} (got {p!r})")
    return p


def _as_of(name: str, v: Any, where: str, sources: dict[str, Source], examples: Any) -> AsOf:
    """``features.as_of.<name>: {source, keys: {example column: source column}, max_age, columns: {source
    column: feature name}}``, checked against the sources' columns."""
    at = f"{where}: features.as_of.{name}"
    if not isinstance(v, dict) or not {"source", "keys", "max_age", "columns"} <= set(v):
        raise ConfigError(f"{at}: needs source, keys, max_age and columns, e.g. {{source: weather, keys: {{origin: airport}}, "
                          f"max_age: 6h, columns: {{temp_c: origin_temp_c}}}} (got {v!r})")
    if v["source"] not in sources or v["source"] == examples:
        raise ConfigError(f"{at}: source '{v['source']}' is not one of the other sources {[s for s in sources if s != examples]}")
    src, ex = sources[v["source"]], sources.get(examples)
    keys, columns = dict(v["keys"] or {}), dict(v["columns"] or {})
    if not keys or not columns:
        raise ConfigError(f"{at}: keys and columns must each name at least one column")
    for e, c in keys.items():
        if ex is not None and e not in ex.column_names:
            raise ConfigError(f"{at}: keys '{e}' is not a column of the examples {ex.column_names}")
        if c not in src.column_names:
            raise ConfigError(f"{at}: keys '{e}: {c}': '{c}' is not a column of source {src.name} {src.column_names}")
    types = {c.name: c.type for c in src.columns}
    for c in columns:
        if types.get(c) not in NUMERIC_TYPES:
            raise ConfigError(f"{at}: columns '{c}' must be a numeric column of source {src.name} "
                              f"({[n for n, t in types.items() if t in NUMERIC_TYPES]})")
    if not re.fullmatch(r"\d+[smhd]", str(v["max_age"])):
        raise ConfigError(f"{at}: max_age '{v['max_age']}' is not <number><s|m|h|d>, e.g. 6h")
    return AsOf(name=name, source=src.name, keys=keys, max_age=str(v["max_age"]), columns=columns)


def _categorical(name: str, v: Any, where: str) -> tuple[str, ...] | Vocab:
    """A list is a fixed vocabulary; ``{top: N, min_count: M}`` one learned from each train window."""
    at = f"{where}: features.categorical.{name}"
    if isinstance(v, (list, tuple)):
        return tuple(str(x) for x in v)
    if not isinstance(v, dict):
        raise ConfigError(f"{at}: expected a list of values or {{top: N, min_count: M}} (got {v!r})")
    unknown = sorted(set(v) - set(VOCAB_KEYS))
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {unknown} (allowed: {', '.join(VOCAB_KEYS)})")
    if v.get("from", "train") != "train":
        raise ConfigError(f"{at}: from '{v['from']}': a vocabulary is learned from the train window only (from: train); "
                          f"the valid and holdout windows' rows judge the model and must not shape its inputs")
    try:
        top = None if v.get("top") is None else int(v["top"])
        min_count = int(v.get("min_count", 1))
    except (TypeError, ValueError):
        raise ConfigError(f"{at}: top and min_count are whole numbers (got {v!r})") from None
    if (top is not None and top < 1) or min_count < 1:
        raise ConfigError(f"{at}: top and min_count must be at least 1 (got {v!r})")
    return Vocab(top=top, min_count=min_count)


def _recency(name: str, v: Any, where: str) -> Recency:
    if not isinstance(v, dict) or "entity" not in v or "window" not in v:
        raise ConfigError(f"{where}: features.recency.{name} needs an entity and a bounded window, "
                          f"e.g. {{entity: card_id, window: 30d}} (got {v!r})")
    return Recency(entity=tuple(_as_list(v["entity"])), window=str(v["window"]))


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


# ---------------------------------------------------------------- params.yaml
def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    return load_yaml(path)


def merge_params(base: dict[str, Any], overrides: dict[str, Any], where: str = "<dataset>", path: str = "params") -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it: mappings merge key by key, any other value replaces. A dataset
    spec's ``params`` section may only name sections and keys params.yaml has (a typo would otherwise be
    silently ignored); inside a mapping that params.yaml leaves open (empty or null), any key goes."""
    out = dict(base)
    for k, v in overrides.items():
        if base and k not in base:
            raise ConfigError(f"{where}: {path}.{k} is not a key of params.yaml's {path} (allowed: {', '.join(sorted(base))})")
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = merge_params(base[k], v, where, f"{path}.{k}")
        else:
            out[k] = v
    return out


def effective_params(params: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    """The params a step of ``spec`` runs with: params.yaml, then the spec's own ``params`` section."""
    return merge_params(params, spec.params, spec.path) if spec.params else params


def parse_ds(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--ds '{value}' is not a date YYYY-MM-DD") from None
