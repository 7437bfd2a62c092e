"""Run folders on shared storage (jobs.common.storage): the same file operations on a local folder and on
S3 (moto's server on loopback), and a step's local copy of an S3 run folder, pulled and pushed."""
from __future__ import annotations

import pytest

from jobs.common import storage
from jobs.common.errors import ConfigError


@pytest.fixture()
def s3_root(s3_server, monkeypatch, request):
    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    return f"s3://trainyard-registry/runs-{request.node.name.replace('[', '-').rstrip(']')}"


@pytest.mark.parametrize("remote", [False, True])
def test_checkpoint_files_are_written_listed_read_and_removed_alike(remote, tmp_path, request):
    root = request.getfixturevalue("s3_root") if remote else str(tmp_path / "runs")
    folder = storage.join(root, "cards", "ds=2026-10-20", "model", "checkpoints")
    assert storage.names(folder) == []
    for name, data in (("ckpt-000050.ubj", b"b"), ("ckpt-000025.ubj", b"a"), ("fingerprint.txt", b"f")):
        storage.write_bytes(storage.join(folder, name), data)
    storage.write_bytes(storage.join(folder, "ckpt-000050.ubj"), b"c")  # a rewrite replaces
    assert storage.names(folder) == ["ckpt-000025.ubj", "ckpt-000050.ubj", "fingerprint.txt"]
    assert storage.read_bytes(storage.join(folder, "ckpt-000050.ubj")) == b"c"
    storage.remove_tree(folder)
    assert storage.names(folder) == []


def test_a_step_pulls_the_run_folder_and_pushes_only_what_it_changed(s3_root, tmp_path):
    uri = storage.join(s3_root, "cards", "ds=2026-10-20")
    first = tmp_path / "host-a"
    (first / "model").mkdir(parents=True)
    (first / "model" / "train.json").write_text("{}")
    (first / "lineage").mkdir()
    (first / "lineage" / "train.json").write_text("1")
    (first / "lineage" / "old.json").write_text("old")
    assert storage.push(first, uri, {}) == ["lineage/old.json", "lineage/train.json", "model/train.json"]
    storage.write_bytes(storage.join(uri, "model", "checkpoints", "ckpt-000025.ubj"), b"ckpt")  # by a worker

    second = tmp_path / "host-b"
    (second / "stale.txt").parent.mkdir(parents=True)
    (second / "stale.txt").write_text("from another run")
    pulled = storage.pull(uri, second)
    assert sorted(pulled) == ["lineage/old.json", "lineage/train.json", "model/train.json"]  # no checkpoints
    assert not (second / "stale.txt").exists() and (second / "lineage" / "train.json").read_text() == "1"
    (second / "lineage" / "train.json").write_text("2")  # changed
    (second / "lineage" / "old.json").unlink()           # deleted
    (second / "evaluation").mkdir()
    (second / "evaluation" / "blessing.json").write_text("{}")  # new
    assert storage.push(second, uri, pulled) == ["evaluation/blessing.json", "lineage/train.json"]

    third = tmp_path / "host-c"
    assert sorted(storage.pull(uri, third)) == ["evaluation/blessing.json", "lineage/train.json", "model/train.json"]
    assert (third / "lineage" / "train.json").read_text() == "2"
    assert storage.names(storage.join(uri, "model", "checkpoints")) == ["ckpt-000025.ubj"]  # left to train


def test_a_run_folder_on_s3_is_worked_on_as_a_local_copy(cards, tmp_path):
    import dataclasses

    from tests.helpers import context
    from jobs.common.config import Settings
    settings = Settings(spark_master="local[1]", spark_packages=(), spark_conf={}, landing="", lake="",
                        runs="s3://bucket/runs", gx="", registry="")
    ctx = context("train", cards, settings, "2026-10-20")
    assert ctx.run_uri == "s3://bucket/runs/cards/ds=2026-10-20"
    assert ctx.run_dir == storage.local_copy("s3://bucket/runs", "cards", "ds=2026-10-20")
    local = dataclasses.replace(ctx, settings=dataclasses.replace(settings, runs=str(tmp_path)))
    assert local.run_dir == tmp_path / "cards" / "ds=2026-10-20" and local.run_uri == str(local.run_dir)


def test_the_tuning_study_is_shared_when_the_run_folders_are(tmp_path):
    from jobs.tune import study_storage
    assert study_storage("postgresql://db/optuna", "s3://b/runs", "cards") == "postgresql://db/optuna"
    assert study_storage(None, str(tmp_path), "cards") == f"sqlite:///{tmp_path / 'cards' / 'tune.db'}"
    with pytest.raises(ConfigError, match="tune.storage: storage.runs is s3://b/runs, shared by every host"):
        study_storage(None, "s3://b/runs", "cards")
