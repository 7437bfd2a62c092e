"""Dataset specs and settings: the shipped ones load; a wrong one names the file and key."""
from __future__ import annotations

import pytest

from jobs.common.config import DatasetSpec, Settings
from jobs.common.errors import ConfigError

BASE = {"name": "x", "examples": "e", "label": {"name": "y", "column": "c", "positive_values": ["1"]},
        "sources": {"e": {"path": "x/e", "key": "k", "event_time": "t",
                          "columns": [{"name": "k", "type": "string"}, {"name": "t", "type": "timestamp"},
                                      {"name": "c", "type": "string"}]}}}


def test_shipped_specs_load(cards, adult):
    assert cards.example_source.key == "txn_id" and cards.label.source == "chargebacks"
    assert adult.label.column == "income" and "sex" in adult.sensitive
    assert "card_merchant_count_30d" in cards.features.names and "workclass" in adult.features.names
    assert Settings.load("conf/local.yaml").spark_master == "local[*]"


@pytest.mark.parametrize("patch, message", [
    ({"sources": {"e": {**BASE["sources"]["e"], "key": "nope"}}}, "key 'nope' is not one of its columns"),
    ({"sources": {"e": {**BASE["sources"]["e"], "columns": [{"name": "k", "type": "varchar"}]}}}, "unknown type 'varchar'"),
    ({"label": {"name": "y"}}, "label needs exactly one of 'column'"),
    ({"examples": "f"}, "examples 'f' is not a source"),
    ({"label": {"name": "y", "column": "c", "expr": "c > 1"}}, "label needs exactly one of 'column' .*, 'expr' .* or 'source'"),
    ({"label": {"name": "y", "column": "c"}}, "label.column 'c' needs positive_values"),
    ({"label": {"name": "y", "expr": "delay > 15"}}, r"label.expr 'delay > 15' reads none of the examples' columns \['k', 't', 'c'\]"),
    ({"task": "multilabel"}, r"x.yaml: task 'multilabel' is not one of \['binary', 'regression', 'multiclass'\]"),
    ({"task": "multiclass", "label": {"name": "y", "column": "c", "classes": ["a"]}},
     r"a multiclass label is one of label.classes \(at least two distinct values"),
    ({"label": {"name": "y", "column": "c", "positive_values": ["1"], "classes": ["a", "b"]}},
     "label.classes is for task: multiclass"),
    ({"task": "regression", "label": {"name": "y", "expr": "length(c)", "positive_values": ["1"]}},
     "a regression label is a number: .* not positive_values"),
    ({"task": "regression", "label": {"name": "y", "column": "c"}}, "label.column 'c' of a regression must be a numeric column"),
    ({"task": "regression", "label": {"name": "y", "source": "e", "source_key": "k", "known_at": "t"}},
     "a regression label is a number: .* not a label feed"),
])
def test_bad_spec_is_named(patch, message):
    with pytest.raises(ConfigError, match=message):
        DatasetSpec.from_dict({**BASE, **patch}, "conf/datasets/x.yaml")


def test_unknown_dataset_lists_known():
    with pytest.raises(ConfigError, match=r"unknown dataset 'nope'.*known: adult, cards, flights"):
        DatasetSpec.load("nope")


def test_a_spec_overrides_params_by_section_and_a_step_runs_with_the_result(tmp_path):
    import yaml

    from jobs.common.cli import build_context, parser
    from jobs.common.config import effective_params, load_params
    spec_path = tmp_path / "small.yaml"
    spec_path.write_text(yaml.safe_dump({**BASE, "name": "small", "params": {
        "features": {"split": {"train_days": 12}}, "evaluate": {"gate": {"min_auc": 0.6}}, "validate": {"mostly": {"e": {"c": 0.9}}}}}))
    args = parser("train").parse_args(["--ds", "2026-11-01", "--dataset", str(spec_path), "--set", "train.n_estimators=7"])
    ctx = build_context("train", args)
    base = load_params("params.yaml")
    assert ctx.params["features"]["split"] == {**base["features"]["split"], "train_days": 12}  # the rest kept
    assert ctx.params["evaluate"]["gate"]["min_auc"] == 0.6
    assert ctx.params["evaluate"]["gate"]["min_pr_auc"] == base["evaluate"]["gate"]["min_pr_auc"]
    assert ctx.params["validate"]["mostly"] == {"e": {"c": 0.9}}  # an open mapping of params.yaml takes any key
    assert ctx.params["train"]["n_estimators"] == 7  # --set still has the last word
    assert effective_params(base, DatasetSpec.load("cards")) is base  # no params section: params.yaml as is


@pytest.mark.parametrize("params, message", [
    ({"feature": {"split": {}}}, r"x.yaml: params.feature is not a key of params.yaml's params \(allowed: .*features"),
    ({"features": {"split": {"train_day": 3}}}, r"params.features.split.train_day is not a key .*train_days"),
    ({"train": 5}, "params must map params.yaml sections to their overrides"),
])
def test_a_params_override_params_yaml_does_not_know_is_refused(params, message):
    from jobs.common.config import effective_params, load_params
    with pytest.raises(ConfigError, match=message):
        effective_params(load_params("params.yaml"), DatasetSpec.from_dict({**BASE, "params": params}, "conf/datasets/x.yaml"))


@pytest.mark.parametrize("as_of, message", [
    ({"source": "rain", "keys": {"c": "k2"}, "max_age": "6h", "columns": {"v": "x"}}, r"source 'rain' is not one of the other sources \['w'\]"),
    ({"source": "w", "keys": {"nope": "k2"}, "max_age": "6h", "columns": {"v": "x"}}, r"keys 'nope' is not a column of the examples"),
    ({"source": "w", "keys": {"c": "k2"}, "max_age": "6h", "columns": {"s": "x"}}, r"columns 's' must be a numeric column of source w \(\['v'\]\)"),
    ({"source": "w", "keys": {"c": "k2"}, "max_age": "six hours", "columns": {"v": "x"}}, "max_age 'six hours' is not <number>"),
    ({"source": "w", "keys": {"c": "k2"}}, "needs source, keys, max_age and columns"),
])
def test_an_as_of_join_the_sources_cannot_make_is_named(as_of, message):
    doc = {**BASE, "sources": {**BASE["sources"], "w": {"path": "x/w", "key": "k2", "event_time": "t2", "columns": [
        {"name": "k2", "type": "string"}, {"name": "t2", "type": "timestamp"}, {"name": "v", "type": "double"},
        {"name": "s", "type": "string"}]}}, "features": {"as_of": {"wx": as_of}}}
    with pytest.raises(ConfigError, match=r"conf/datasets/x.yaml: features.as_of.wx: " + message):
        DatasetSpec.from_dict(doc, "conf/datasets/x.yaml")
