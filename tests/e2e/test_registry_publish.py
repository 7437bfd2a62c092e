"""Publishing under failure, on both registry backends (a local directory and S3 on a real S3-compatible
server process on loopback): killing publish at each point never leaves the champion alias on an incomplete
or unverified version, a rerun completes, rollback restores the previous champion in one command, and the
conditional writes let only one of two writers win; show and promote work from the CLI and refuse a version
whose artifact no longer matches its manifest."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from jobs.common.files import sha256_file
from jobs.registry import AliasConflict, open_registry
from tests.conftest import REPO, write_conf

CRASH_POINTS = ("objects_written", "version_written", "alias_event_prepared", "alias_moved")
D0, D1, D2, D3 = dt.date(2026, 10, 19), dt.date(2026, 10, 20), dt.date(2026, 10, 21), dt.date(2026, 10, 22)


def _compared(root, ds: dt.date, champion: str | None) -> None:
    """Record in ds's blessing the champion its evaluation compared against (what evaluate writes)."""
    path = root / "runs" / "cards" / f"ds={ds}" / "evaluation" / "blessing.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "champion_version": champion}))


def _run_dir(root, ds: dt.date, seed: int) -> None:
    """What train and evaluate leave for publish: a blessed model of ds (evaluated with no champion yet)."""
    import xgboost as xgb
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(300, 3)), rng.integers(0, 2, 300)
    run = root / "runs" / "cards" / f"ds={ds}"
    (run / "model").mkdir(parents=True)
    (run / "evaluation").mkdir()
    (run / "lineage").mkdir()
    art = run / "model" / "model.ubj"
    xgb.train({"max_depth": 2, "seed": seed}, xgb.DMatrix(x, label=y), 3).save_model(str(art))
    sha = sha256_file(art)
    (run / "model" / "train.json").write_text(json.dumps({
        "artifact": str(art), "sha256": sha, "feature_names": ["a", "b", "c"], "feature_types": ["q"] * 3, "label": "is_fraud",
        "params": {}, "counts": {}, "num_workers": 1, "best_iteration": 2, "num_boosted_rounds": 3}))
    ev = run / "evaluation"
    (ev / "blessing.json").write_text(json.dumps({"blessed": True, "mode": "enabled", "artifact_sha256": sha, "checks": [],
                                                  "failed": [], "warnings": [], "reasons": ["all blocking checks passed"],
                                                  "champion_version": None}))
    (ev / "metrics.json").write_text(json.dumps({"auc": 0.9}))
    (ev / "evaluation.json").write_text("{}")
    (ev / "report.html").write_text("<html></html>")
    (ev / "model_card.md").write_text("# card")
    (run / "lineage" / "train.json").write_text(json.dumps({"reads": {"training_set": 3}, "writes": {}}))


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path, monkeypatch):
    uri = str(tmp_path / "registry")
    env = dict(os.environ)
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        uri = f"s3://trainyard-registry/{tmp_path.name}"
        env.update(server)
        for k, v in server.items():
            monkeypatch.setenv(k, v)
    conf = write_conf(tmp_path)
    doc = yaml.safe_load(conf.read_text())
    doc["registry"]["uri"] = uri
    conf.write_text(yaml.safe_dump(doc))
    for ds, seed in ((D1, 1), (D2, 2)):
        _run_dir(tmp_path, ds, seed)
    return conf, uri, env


def _cli(env, *args, crash: str | None = None):
    """A step CLI; publish in ``direct`` mode (the champion moves), as ``make run`` publishes."""
    e = {k: v for k, v in env.items() if k != "TRAINYARD_CRASH_AT"} | ({"TRAINYARD_CRASH_AT": crash} if crash else {})
    direct = ["--set", "publish.mode=direct"] if args[0] == "jobs.publish" else []
    return subprocess.run([sys.executable, "-m", *args, *direct], cwd=REPO, env=e, capture_output=True, text=True)


def test_killed_publish_never_moves_the_champion_to_an_incomplete_version_and_rollback_restores(backend, tmp_path):
    conf, uri, env = backend
    reg = open_registry(uri)
    first = _cli(env, "jobs.publish", "--conf", str(conf), "--ds", D1.isoformat())
    assert first.returncode == 0, first.stderr[-2000:]
    v1 = reg.alias("cards", "champion")["version"]
    _compared(tmp_path, D2, v1)
    for point in CRASH_POINTS:
        killed = _cli(env, "jobs.publish", "--conf", str(conf), "--ds", D2.isoformat(), crash=point)
        assert killed.returncode == -9, (point, killed.stderr[-2000:])
        version = reg.alias("cards", "champion")["version"]
        reg.verify("cards", version)  # complete, and its files hash to the manifest's sha256
        listed = [m["version"] for m in reg.versions("cards")]
        if point == "objects_written":  # objects without a manifest are not a version
            assert listed == [v1] and version == v1, point
        elif point != "alias_moved":    # complete, verifiable, but not (yet) the champion
            assert len(listed) == 2 and version == v1, point
        else:                           # moved, killed before its event was logged: the log still shows it
            assert version != v1 and [e["version"] for e in reg.history("cards")] == [v1, version], point
    done = _cli(env, "jobs.publish", "--conf", str(conf), "--ds", D2.isoformat())
    assert done.returncode == 0, done.stderr[-2000:]
    v2 = reg.alias("cards", "champion")["version"]
    assert v2 != v1 and v2.startswith(D2.isoformat()) and reg.alias("cards", "champion")["previous"] == v1
    reg.verify("cards", v2)
    manifest = reg.manifest("cards", v2)
    assert manifest["lineage"]["delta_versions_read"] == {"train": {"training_set": 3}}
    back = _cli(env, "jobs.registry", "--conf", str(conf), "--model", "cards", "rollback")
    assert back.returncode == 0, back.stderr[-2000:]
    assert reg.alias("cards", "champion")["version"] == v1
    listing = _cli(env, "jobs.registry", "--conf", str(conf), "--model", "cards", "list")
    assert f"* {v1}" in listing.stdout and f"champion: {v1}" in listing.stdout
    moves = [(h["event"], h["version"]) for h in reg.history("cards")]
    assert moves == [("publish", v1), ("publish", v2), ("rollback", v1)]  # killed attempts left no false event


def test_the_champion_moves_only_forward_and_rollback_walks_the_history_back(backend, tmp_path):
    conf, uri, env = backend
    reg = open_registry(uri)
    publish = lambda ds: _cli(env, "jobs.publish", "--conf", str(conf), "--ds", ds.isoformat())  # noqa: E731
    for ds, seed in ((D0, 0), (D3, 3)):
        _run_dir(tmp_path, ds, seed)
    assert publish(D1).returncode == 0
    a = reg.alias("cards", "champion")["version"]
    _compared(tmp_path, D3, a)  # D3 evaluated against champion A ...
    _compared(tmp_path, D2, a)
    assert publish(D2).returncode == 0  # ... then the champion moved to B
    b = reg.alias("cards", "champion")["version"]
    for attempt in range(2):            # a retry of the refused publish is refused the same way
        refused = publish(D3)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert f"the champion is {b}, but the evaluation of" in refused.stderr and "re-run evaluate" in refused.stderr
        assert reg.alias("cards", "champion")["version"] == b
    _compared(tmp_path, D0, b)          # a backfill of an older ds: published as a version, the champion stays
    old = publish(D0)
    assert old.returncode == 0 and "published as a version, not promoted" in old.stdout, old.stderr[-2000:]
    assert reg.alias("cards", "champion")["version"] == b and any(m["ds"] == D0.isoformat() for m in reg.versions("cards"))
    _compared(tmp_path, D3, b)          # re-evaluated against B: now it moves
    assert publish(D3).returncode == 0
    c = reg.alias("cards", "champion")["version"]
    assert c.startswith(D3.isoformat())
    cli = lambda *a: _cli(env, "jobs.registry", "--conf", str(conf), "--model", "cards", *a)  # noqa: E731
    for expected in (b, a):             # rollback twice walks back two moves
        back = cli("rollback")
        assert back.returncode == 0 and reg.alias("cards", "champion")["version"] == expected, back.stderr[-2000:]
    assert cli("rollback").returncode != 0  # A was the first champion: nothing before it
    history = cli("history", "--alias", "champion")
    lines = history.stdout.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["publish", "publish", "publish", "rollback", "rollback"], history.stdout
    assert all(" by " in line for line in lines) and f"None -> {a}" in lines[0] and f"{c} -> {b}" in lines[3]


def test_only_one_of_two_writers_wins(backend):
    conf, uri, env = backend
    assert _cli(env, "jobs.publish", "--conf", str(conf), "--ds", D1.isoformat()).returncode == 0
    a, b = open_registry(uri), open_registry(uri)
    key = "cards/aliases/champion.json"
    _, etag = a._alias("cards", "champion")
    assert a._put_if(key, b'{"version": "x"}', etag) is True
    assert b._put_if(key, b'{"version": "y"}', etag) is False  # b read the same etag: its swap must fail
    assert a._put_if("cards/aliases/new.json", b"{}", None) is True
    assert b._put_if("cards/aliases/new.json", b"{}", None) is False  # create-only
    _, stale = open_registry(uri)._alias("cards", "champion")
    a._put_if(key, json.dumps({"version": a.versions("cards")[0]["version"]}).encode(), stale)
    b_reg = open_registry(uri)
    b_reg._alias = lambda model, name: ({"version": "old"}, stale)  # a writer holding a stale read
    with pytest.raises(AliasConflict, match="moved by another writer"):
        b_reg.set_alias("cards", "champion", a.versions("cards")[0]["version"], "race")


def test_show_and_promote_through_the_cli_refuse_a_corrupt_version(backend, tmp_path):
    conf, uri, env = backend
    reg = open_registry(uri)
    for ds in (D1, D2):
        _compared(tmp_path, ds, (reg.alias("cards", "champion") or {}).get("version"))
        assert _cli(env, "jobs.publish", "--conf", str(conf), "--ds", ds.isoformat()).returncode == 0
    v1, v2 = [m["version"] for m in reg.versions("cards")]
    cli = lambda *a: _cli(env, "jobs.registry", "--conf", str(conf), "--model", "cards", *a)  # noqa: E731
    shown = cli("show")  # default: the champion's manifest
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["version"] == v2 and json.loads(shown.stdout)["sha256"] == reg.manifest("cards", v2)["sha256"]
    assert json.loads(cli("show", v1).stdout)["version"] == v1
    missing = cli("show", "2020-01-01-nope")
    assert missing.returncode != 0 and "no version '2020-01-01-nope'" in missing.stderr

    promoted = cli("promote", v1)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    assert json.loads(promoted.stdout)["previous"] == v2 and reg.alias("cards", "champion")["version"] == v1
    assert cli("promote", "--alias", "challenger", v2).returncode == 0
    assert cli("promote", "--alias", "challenger", v1, "--reason", "try the older one").returncode == 0
    challenger = reg.alias("cards", "challenger")
    assert (challenger["version"], challenger["previous"], challenger["reason"]) == (v1, v2, "try the older one")

    art = reg.manifest("cards", v2)["artifact"]
    reg._put(reg._vkey("cards", v2, art), b"not the published model")  # someone overwrote the artifact
    refused = cli("promote", v2)
    assert refused.returncode != 0 and "checksum mismatch" in refused.stderr
    assert reg.alias("cards", "champion")["version"] == v1  # the alias did not move
    assert f"* {v1}" in cli("list").stdout
