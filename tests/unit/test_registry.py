"""Local registry: atomic versions, idempotent republish, checksums, aliases and rollback."""
from __future__ import annotations

import json

import pytest

from jobs.common.files import sha256_file
from jobs.registry import AliasConflict, LocalRegistry, RegistryError, main


def _artifact(tmp_path, content: bytes, name="model.ubj"):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def _publish(reg, tmp_path, version, content):
    art = _artifact(tmp_path, content, f"{version}.ubj")
    return reg.publish("m", version, {"model.ubj": art}, {"version": version, "artifact": "model.ubj", "sha256": sha256_file(art)})


def test_publish_is_atomic_and_idempotent(tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    assert _publish(reg, tmp_path, "v1", b"one") is True
    assert _publish(reg, tmp_path, "v1", b"one") is False           # rerun: same version, no duplicate
    with pytest.raises(RegistryError, match="exists with a different artifact"):
        _publish(reg, tmp_path, "v1", b"other")
    assert [m["version"] for m in reg.versions("m")] == ["v1"]
    assert not [p for p in (tmp_path / "reg" / "m" / "versions").iterdir() if p.name.startswith(".tmp")]


def test_alias_moves_only_to_verified_versions_and_rolls_back(tmp_path, capsys):
    reg = LocalRegistry(tmp_path / "reg")
    _publish(reg, tmp_path, "v1", b"one")
    _publish(reg, tmp_path, "v2", b"two")
    reg.set_alias("m", "champion", "v1", "first")
    reg.set_alias("m", "champion", "v2", "second")
    assert reg.alias("m", "champion")["previous"] == "v1"
    (reg.version_dir("m", "v2") / "model.ubj").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="checksum mismatch"):
        reg.verify("m", "v2")
    assert reg.rollback("m")["version"] == "v1"
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("m")  # v1 was the first: nothing before it (not back to v2)
    with pytest.raises(RegistryError, match="no version 'v9'"):
        reg.set_alias("m", "champion", "v9", "nope")


def test_cli_list_promote_rollback(tmp_path, capsys):
    conf = tmp_path / "conf.yaml"
    conf.write_text(json.dumps({"storage": {"landing": "l", "lake": "k", "runs": "r"}, "registry": {"uri": str(tmp_path / "reg")}}))
    reg = LocalRegistry(tmp_path / "reg")
    _publish(reg, tmp_path, "v1", b"one")
    _publish(reg, tmp_path, "v2", b"two")
    main(["--conf", str(conf), "--model", "m", "promote", "v1"])
    main(["--conf", str(conf), "--model", "m", "promote", "v2"])
    main(["--conf", str(conf), "--model", "m", "rollback"])
    main(["--conf", str(conf), "--model", "m", "list"])
    out = capsys.readouterr().out
    assert "* v1" in out and "champion: v1" in out


def test_compare_and_swap_from_the_expected_version_and_an_event_per_move(tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    for v in ("v1", "v2", "v3"):
        _publish(reg, tmp_path, v, v.encode())
    reg.set_alias("m", "champion", "v1", "first", expect=None)
    with pytest.raises(AliasConflict, match="is at v1, not at None"):
        reg.set_alias("m", "champion", "v2", "compared against no champion", expect=None)
    reg.set_alias("m", "champion", "v2", "compared against v1", expect="v1", actor="airflow:run-2")
    assert reg.set_alias("m", "champion", "v2", "a retry", expect="v1")["seq"] == 2  # done already: no new event
    reg.set_alias("m", "champion", "v3", "manual", event="promote")
    reg.set_alias("m", "challenger", "v3", "shadow")
    assert [(e["alias"], e["previous"], e["version"]) for e in reg.history("m", "champion")] == [
        ("champion", None, "v1"), ("champion", "v1", "v2"), ("champion", "v2", "v3")]
    assert {e["alias"] for e in reg.history("m")} == {"champion", "challenger"}
    assert reg.history("m", "champion")[1]["actor"] == "airflow:run-2"
    # rollback walks back the history: v3 -> v2 -> v1, each move logged
    assert reg.rollback("m")["version"] == "v2"
    assert reg.rollback("m")["version"] == "v1"
    moves = [(e["event"], e["version"]) for e in reg.history("m", "champion")]
    assert moves[-2:] == [("rollback", "v2"), ("rollback", "v1")] and len(moves) == 5


def test_a_move_whose_event_a_crash_cut_off_is_still_in_the_history(tmp_path, monkeypatch):
    reg = LocalRegistry(tmp_path / "reg")
    for v in ("v1", "v2"):
        _publish(reg, tmp_path, v, v.encode())
    reg.set_alias("m", "champion", "v1", "first")
    original = reg._put_if
    monkeypatch.setattr(reg, "_put_if", lambda key, data, etag: original(key, data, etag) if "/events/" not in key else True)
    reg.set_alias("m", "champion", "v2", "second")  # the alias moved, its event was never written
    assert [e["version"] for e in reg.history("m")] == ["v1", "v2"]
    monkeypatch.undo()
    assert reg.rollback("m")["version"] == "v1"
    assert [e["seq"] for e in reg.history("m")] == [1, 2, 3]
