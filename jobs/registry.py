"""The model registry: immutable version folders and movable aliases (``champion``, ``challenger``).

Layout (local directory backend)::

    <root>/<model>/versions/<version>/{model.ubj, manifest.json, blessing.json, evaluation.json, model_card.md}
    <root>/<model>/aliases/<alias>.json           {"version": ..., "previous": ..., ...}
    <root>/<model>/aliases/<alias>.history.jsonl  every move, append-only

A version folder is assembled under a temporary name and renamed into place (atomic on one filesystem);
an alias is a small JSON replaced atomically, and only ever names a complete, checksum-verified version.

CLI: ``python -m jobs.registry list|show|promote|rollback [--model NAME] [--conf conf/local.yaml]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from jobs.common.config import Settings
from jobs.common.errors import TrainyardError
from jobs.common.files import sha256_file

MANIFEST = "manifest.json"


class RegistryError(TrainyardError):
    pass


class LocalRegistry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ---------------------------------------------------------------- reading
    def _model(self, model: str) -> Path:
        return self.root / model

    def version_dir(self, model: str, version: str) -> Path:
        return self._model(model) / "versions" / version

    def manifest(self, model: str, version: str) -> dict[str, Any]:
        p = self.version_dir(model, version) / MANIFEST
        if not p.exists():
            raise RegistryError(f"model '{model}' has no version '{version}' in {self.root}")
        return json.loads(p.read_text())

    def versions(self, model: str) -> list[dict[str, Any]]:
        d = self._model(model) / "versions"
        if not d.exists():
            return []
        out = [json.loads((v / MANIFEST).read_text()) for v in d.iterdir() if (v / MANIFEST).exists() and not v.name.startswith(".")]
        return sorted(out, key=lambda m: (m.get("published_at", ""), m["version"]))

    def alias(self, model: str, name: str) -> dict[str, Any] | None:
        p = self._model(model) / "aliases" / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def verify(self, model: str, version: str) -> Path:
        """The artifact of a version, after checking it is complete and its sha256 matches the manifest."""
        m = self.manifest(model, version)
        art = self.version_dir(model, version) / m["artifact"]
        if not art.exists():
            raise RegistryError(f"{model}/{version}: artifact {m['artifact']} is missing")
        actual = sha256_file(art)
        if actual != m["sha256"]:
            raise RegistryError(f"{model}/{version}: checksum mismatch: manifest {m['sha256']}, artifact {actual}")
        return art

    def champion(self, model: str) -> tuple[str, Path, dict[str, Any]] | None:
        """(version, verified artifact path, manifest) of the model's champion, or None if it has none."""
        alias = self.alias(model, "champion")
        if not alias:
            return None
        version = alias["version"]
        return version, self.verify(model, version), self.manifest(model, version)

    def load_booster(self, model: str, version: str):
        import xgboost as xgb
        booster = xgb.Booster()
        booster.load_model(str(self.verify(model, version)))
        return booster

    # ---------------------------------------------------------------- writing
    def publish(self, model: str, version: str, files: dict[str, Path], manifest: dict[str, Any]) -> bool:
        """Write a version folder atomically. Returns False if that exact version already exists (a rerun)."""
        final = self.version_dir(model, version)
        if (final / MANIFEST).exists():
            existing = self.manifest(model, version)
            if existing["sha256"] != manifest["sha256"]:
                raise RegistryError(f"{model}/{version} exists with a different artifact ({existing['sha256']})")
            return False
        tmp = final.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            for name, src in files.items():
                shutil.copyfile(src, tmp / name)
            if sha256_file(tmp / manifest["artifact"]) != manifest["sha256"]:
                raise RegistryError(f"{model}/{version}: artifact changed while it was being copied")
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))  # manifest last
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def set_alias(self, model: str, name: str, version: str, reason: str) -> dict[str, Any]:
        self.verify(model, version)  # an alias never points at an incomplete or corrupt version
        d = self._model(model) / "aliases"
        d.mkdir(parents=True, exist_ok=True)
        current = self.alias(model, name)
        doc = {"alias": name, "version": version, "previous": current["version"] if current else None,
               "reason": reason, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        if current and current["version"] == version:
            return current
        with open(d / f"{name}.history.jsonl", "a") as f:
            f.write(json.dumps(doc) + "\n")
        tmp = d / f".{name}.json.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, d / f"{name}.json")
        return doc

    def rollback(self, model: str, name: str = "champion") -> dict[str, Any]:
        current = self.alias(model, name)
        if not current or not current.get("previous"):
            raise RegistryError(f"model '{model}': alias '{name}' has no previous version to roll back to")
        return self.set_alias(model, name, current["previous"], reason=f"rollback from {current['version']}")


def open_registry(uri: str) -> LocalRegistry:
    if uri.startswith("s3://"):
        raise RegistryError(f"registry {uri}: the s3 backend is not available yet (local directories only)")
    return LocalRegistry(uri)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobs.registry", description="List, inspect, promote and roll back models.")
    p.add_argument("--conf", default=os.environ.get("TRAINYARD_CONF", "conf/local.yaml"))
    p.add_argument("--model", default=os.environ.get("TRAINYARD_DATASET", "cards"), help="model name (= dataset name)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="versions and aliases")
    s = sub.add_parser("show", help="a version's manifest")
    s.add_argument("version", nargs="?", help="default: the champion")
    pr = sub.add_parser("promote", help="point an alias at a version")
    pr.add_argument("version")
    pr.add_argument("--alias", default="champion")
    rb = sub.add_parser("rollback", help="point the alias back at its previous version")
    rb.add_argument("--alias", default="champion")
    a = p.parse_args(argv)
    try:
        reg = open_registry(Settings.load(a.conf).registry)
        if a.cmd == "list":
            champ = (reg.alias(a.model, "champion") or {}).get("version")
            for m in reg.versions(a.model):
                mark = "*" if m["version"] == champ else " "
                print(f"{mark} {m['version']}  ds={m.get('ds')}  auc={m.get('metrics', {}).get('auc')}  sha256={m['sha256'][:12]}")
            print(f"champion: {champ}")
        elif a.cmd == "show":
            version = a.version or (reg.alias(a.model, "champion") or {}).get("version")
            if not version:
                raise RegistryError(f"model '{a.model}' has no champion")
            print(json.dumps(reg.manifest(a.model, version), indent=2))
        elif a.cmd == "promote":
            print(json.dumps(reg.set_alias(a.model, a.alias, a.version, reason="manual promote"), indent=2))
        elif a.cmd == "rollback":
            print(json.dumps(reg.rollback(a.model, a.alias), indent=2))
    except TrainyardError as e:
        print(f"trainyard registry FAILED: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
