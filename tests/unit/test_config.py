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
])
def test_bad_spec_is_named(patch, message):
    with pytest.raises(ConfigError, match=message):
        DatasetSpec.from_dict({**BASE, **patch}, "conf/datasets/x.yaml")


def test_unknown_dataset_lists_known():
    with pytest.raises(ConfigError, match=r"unknown dataset 'nope'.*known: adult, cards"):
        DatasetSpec.load("nope")
