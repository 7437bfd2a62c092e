"""The model registry: immutable versions and movable aliases (``champion``, ``challenger``), on a local
directory (default) or ``s3://bucket/prefix`` (boto3; any S3-compatible endpoint via AWS_ENDPOINT_URL).

Layout (the same keys on both backends)::

    <root>/<model>/versions/<version>/{model.ubj, baseline.json, profile.json, blessing.json, evaluation.json, report.html, model_card.md, manifest.json}
    <root>/<model>/aliases/<alias>.json                {"version", "previous", "stack", "seq", "actor", "reason", ...}
    <root>/<model>/events/<alias>/<seq>.json           the event log: every alias move, write-once

A version is complete exactly when its manifest exists, and the manifest is written last: locally the
version is assembled under a temporary name and renamed into place; on S3 the objects go first and the
manifest last with ``If-None-Match: *``, so of two publishers only one creates it. An alias is moved by a
compare-and-swap (S3: ``If-Match`` on the alias object's ETag, ``If-None-Match`` when new; locally: an
exclusive lock and the same comparison), only to a complete version whose artifact matches the manifest's
sha256. Every move is an event (who, what, why) in an append-only log, written right after the alias moves
(a crash in between is repaired from the alias document, which carries the same event). A challenger
that is retired or promoted is cleared (its alias document names no version). Every load of a model
(``jobs.model.from_registry``) verifies the checksum.

CLI: ``python -m jobs.registry list|show|history|promote|rollback [--model NAME] [--conf conf/local.yaml]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobs.common.config import Settings
from jobs.common.errors import TrainyardError
from jobs.common.files import sha256_file

MANIFEST = "manifest.json"


class RegistryError(TrainyardError):
    pass


class AliasConflict(RegistryError):
    """Another writer moved the alias between our read and our write."""


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: ``TRAINYARD_CRASH_AT=<name>`` SIGKILLs this process here."""
    if os.environ.get("TRAINYARD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


ANY = object()  # set_alias: no expectation about the alias's current version


def default_actor() -> str:
    """Who moves an alias: the Airflow run, else the person at the shell."""
    import getpass
    run = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if run:
        return f"airflow:{os.environ.get('AIRFLOW_CTX_DAG_ID', '?')}/{run}"
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user:unknown"


def held_before(alias: dict[str, Any] | None) -> list[str]:
    """The versions an alias held before its current one, oldest first (documents written before the stack
    existed name only their ``previous``)."""
    if not alias:
        return []
    if "stack" in alias:
        return list(alias["stack"])
    return [alias["previous"]] if alias.get("previous") else []


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


class Registry:
    """The protocol, shared by the backends; they provide the storage primitives below."""

    # ------------------------------------------------------------ backend primitives
    def _get(self, key: str) -> tuple[bytes, str] | None:
        """(content, etag) of an object, or None."""
        raise NotImplementedError

    def _put_if(self, key: str, data: bytes, etag: str | None) -> bool:
        """Write ``key`` only if its current etag is ``etag`` (None: only if it does not exist). False if not."""
        raise NotImplementedError

    def _put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def _write_version(self, model: str, version: str, files: dict[str, Path], manifest: bytes) -> bool:
        raise NotImplementedError

    def artifact_file(self, model: str, version: str, name: str) -> Path | None:
        """A local file holding the version's ``name`` (downloaded on S3), or None if it is missing. Not
        verified: ``jobs.model.from_registry`` loads models, checking their sha256."""
        raise NotImplementedError

    def location(self, model: str, version: str) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------ reading
    @staticmethod
    def _vkey(model: str, version: str, name: str = "") -> str:
        return f"{model}/versions/{version}/{name}"

    def manifest(self, model: str, version: str) -> dict[str, Any]:
        got = self._get(self._vkey(model, version, MANIFEST))
        if got is None:
            raise RegistryError(f"model '{model}' has no version '{version}' in {self.location(model, '')}")
        return json.loads(got[0])

    def versions(self, model: str) -> list[dict[str, Any]]:
        """Complete versions only (those with a manifest), oldest first."""
        keys = [k for k in self._list(f"{model}/versions/") if k.endswith("/" + MANIFEST)]
        out = [json.loads(self._get(k)[0]) for k in keys]
        return sorted(out, key=lambda m: (m.get("published_at", ""), m["version"]))

    def _alias(self, model: str, name: str) -> tuple[dict[str, Any] | None, str | None]:
        got = self._get(f"{model}/aliases/{name}.json")
        return (json.loads(got[0]), got[1]) if got else (None, None)

    def alias(self, model: str, name: str) -> dict[str, Any] | None:
        """The alias document, or None when the alias does not exist or was cleared (a retired challenger)."""
        doc = self._alias(model, name)[0]
        return doc if doc and doc.get("version") else None

    def history(self, model: str, name: str | None = None) -> list[dict[str, Any]]:
        """The event log: every alias move (who, what, why, when), oldest first; ``name`` narrows it to one
        alias. An alias is moved first and its event written right after, so a move whose event a crash cut
        off is still listed, from the alias document itself."""
        aliases = [name] if name else sorted({k.split("/")[2] for k in self._list(f"{model}/events/")}
                                             | {Path(k).stem for k in self._list(f"{model}/aliases/") if k.count("/") == 2 and k.endswith(".json")})
        events = []
        for a in aliases:
            logged = [json.loads(self._get(k)[0]) for k in self._list(f"{model}/events/{a}/")]
            current = self._alias(model, a)[0]  # a cleared alias too: its event may be the one a crash cut off
            if current and current.get("seq") and current["seq"] not in {e.get("seq") for e in logged}:
                logged.append(current)
            events += logged
        return sorted(events, key=lambda e: (e["at"], e.get("seq", 0)))

    def verify(self, model: str, version: str) -> dict[str, Any]:
        """The manifest of a complete version whose files (the model, its baseline and reference profile) are
        there and hash to the manifest's sha256; RegistryError naming the file otherwise."""
        m = self.manifest(model, version)
        for entry in (m, m.get("baseline") or {}, m.get("profile") or {}):
            if not entry:
                continue
            art = self.artifact_file(model, version, entry["artifact"])
            if art is None:
                raise RegistryError(f"{model}/{version}: artifact {entry['artifact']} is missing")
            actual = sha256_file(art)
            if actual != entry["sha256"]:
                raise RegistryError(f"{model}/{version}: checksum mismatch of {entry['artifact']}: manifest "
                                    f"{entry['sha256']}, artifact {actual}")
        return m

    # ------------------------------------------------------------ writing
    def publish(self, model: str, version: str, files: dict[str, Path], manifest: dict[str, Any]) -> bool:
        """Write a version, manifest last. False if that exact version already exists (a rerun); an error if
        the version exists with another artifact."""
        try:
            existing = self.manifest(model, version)
        except RegistryError:
            existing = None
        if existing is None:
            if sha256_file(files[manifest["artifact"]]) != manifest["sha256"]:
                raise RegistryError(f"{model}/{version}: the artifact does not match the manifest's sha256")
            doc = {**manifest, "published_at": _now()}
            if self._write_version(model, version, files, json.dumps(doc, indent=2, sort_keys=True, default=str).encode()):
                return True
            existing = self.manifest(model, version)  # another publisher created it first
        if existing["sha256"] != manifest["sha256"]:
            raise RegistryError(f"{model}/{version} exists with a different artifact ({existing['sha256']})")
        return False

    def set_alias(self, model: str, name: str, version: str, reason: str, actor: str | None = None,
                  expect: str | None | object = ANY, event: str = "move") -> dict[str, Any]:
        """Point ``name`` at ``version`` (verified first) by compare-and-swap, then append the move to the
        event log. ``expect`` is the version the caller believes the alias holds (None: no alias yet); if it
        holds another, nothing moves and AliasConflict says so. A concurrent writer between our read and
        our write is an AliasConflict too. The alias document keeps the versions it held before (``stack``),
        which ``rollback`` walks back."""
        self.verify(model, version)  # an alias never points at an incomplete or corrupt version
        current, etag = self._alias(model, name)
        if current and current.get("seq"):
            self._log(model, current)  # the last move's event, if a crash cut it off
        held = current["version"] if current else None
        if held == version:  # a rerun of a move that happened
            return current
        if expect is not ANY and held != expect:
            raise AliasConflict(f"model '{model}': alias '{name}' is at {held}, not at {expect} as expected "
                                f"(it moved since that was read); nothing changed")
        before = held_before(current)
        stack = before[:-1] if event == "rollback" else [*before, held] if held else before
        doc = self._event_doc(name, version, held, stack, reason, actor, event, current)
        crash_point("alias_event_prepared")
        if not self._put_if(f"{model}/aliases/{name}.json", json.dumps(doc, indent=2).encode(), etag):
            raise AliasConflict(f"model '{model}': alias '{name}' was moved by another writer while this one "
                                f"moved it to {version}; nothing changed here, re-read and retry")
        crash_point("alias_moved")
        self._log(model, doc)
        return doc

    def clear_alias(self, model: str, name: str, reason: str, expect: str, event: str = "retire",
                    actor: str | None = None) -> dict[str, Any]:
        """Point ``name`` at nothing (a challenger retired or promoted), by compare-and-swap from ``expect``;
        logged like every move. AliasConflict if it holds another version by now."""
        current, etag = self._alias(model, name)
        held = (current or {}).get("version")
        if held != expect:
            raise AliasConflict(f"model '{model}': alias '{name}' is at {held}, not at {expect} as expected; nothing changed")
        doc = self._event_doc(name, None, held, [*held_before(current), held], reason, actor, event, current)
        if not self._put_if(f"{model}/aliases/{name}.json", json.dumps(doc, indent=2).encode(), etag):
            raise AliasConflict(f"model '{model}': alias '{name}' was moved by another writer while this one cleared it")
        self._log(model, doc)
        return doc

    def _log(self, model: str, doc: dict[str, Any]) -> None:
        """Append a move to the event log (write-once: an event already there stays as it is)."""
        self._put_if(f"{model}/events/{doc['alias']}/{doc['seq']:08d}.json", json.dumps(doc, indent=2).encode(), None)

    @staticmethod
    def _event_doc(name, version, held, stack, reason, actor, event, current) -> dict[str, Any]:
        return {"alias": name, "version": version, "previous": held, "stack": stack, "event": event,
                "reason": reason, "actor": actor or default_actor(), "at": _now(),
                "seq": int((current or {}).get("seq") or 0) + 1}

    def rollback(self, model: str, name: str = "champion", actor: str | None = None) -> dict[str, Any]:
        """Walk the alias one move back along its history: the version it held before its current one, and
        a second rollback the one before that (not back and forth between the last two)."""
        current = self.alias(model, name)
        stack = held_before(current)
        if not stack:
            raise RegistryError(f"model '{model}': alias '{name}' has no earlier version to roll back to")
        return self.set_alias(model, name, stack[-1], reason=f"rollback from {current['version']}", actor=actor,
                              expect=current["version"], event="rollback")


class LocalRegistry(Registry):
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def location(self, model: str, version: str) -> str:
        return str(self.root / model / "versions" / version)

    def version_dir(self, model: str, version: str) -> Path:
        return self.root / model / "versions" / version

    def _get(self, key):
        p = self.root / key
        if not p.is_file():
            return None
        data = p.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def _put(self, key, data):
        p = self.root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, p)

    @contextmanager
    def _lock(self, key: str):
        target = self.root / key
        lock = target.with_name(f".{target.name}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _put_if(self, key, data, etag):
        with self._lock(key):
            got = self._get(key)
            if (got[1] if got else None) != etag:
                return False
            self._put(key, data)
            return True

    def _list(self, prefix):
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts))

    def _write_version(self, model, version, files, manifest):
        final = self.version_dir(model, version)
        tmp = final.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            for name, src in files.items():
                shutil.copyfile(src, tmp / name)
            crash_point("objects_written")
            (tmp / MANIFEST).write_bytes(manifest)  # manifest last
            try:
                os.rename(tmp, final)
            except OSError:  # another publisher renamed its copy into place first
                shutil.rmtree(tmp, ignore_errors=True)
                return False
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        crash_point("version_written")
        return True

    def artifact_file(self, model, version, name):
        p = self.version_dir(model, version) / name
        return p if p.exists() else None


class S3Registry(Registry):
    """``s3://bucket/prefix`` through boto3: credentials and endpoint from the standard AWS environment."""

    def __init__(self, uri: str, cache_dir: str | Path | None = None):
        from jobs.common import storage
        self.uri = uri
        self.bucket, self.prefix = storage.split_uri(uri)
        self.s3 = storage.s3_client()
        self.cache = Path(cache_dir or tempfile.gettempdir()) / "trainyard-registry-cache"

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, model, version):
        return f"s3://{self.bucket}/{self._k(self._vkey(model, version))}"

    @staticmethod
    def _code(e) -> str:
        return str(e.response.get("Error", {}).get("Code", ""))

    def _get(self, key):
        from botocore.exceptions import ClientError
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as e:
            if self._code(e) in ("NoSuchKey", "404"):
                return None
            raise RegistryError(f"s3://{self.bucket}/{self._k(key)}: {e}") from None
        return r["Body"].read(), r["ETag"]

    def _put(self, key, data):
        self.s3.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)

    def _put_if(self, key, data, etag):
        from botocore.exceptions import ClientError
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **cond)
        except ClientError as e:
            if self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise
        return True

    def _list(self, prefix):
        keys, token = [], None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            r = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self._k(prefix), **kw)
            keys += [o["Key"][len(self._k("")):] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return sorted(keys)
            token = r["NextContinuationToken"]

    def _write_version(self, model, version, files, manifest):
        for name, src in files.items():  # objects first: invisible until the manifest exists
            with open(src, "rb") as f:
                self.s3.put_object(Bucket=self.bucket, Key=self._k(self._vkey(model, version, name)), Body=f)
        crash_point("objects_written")
        created = self._put_if(self._vkey(model, version, MANIFEST), manifest, None)
        crash_point("version_written")
        return created

    def artifact_file(self, model, version, name):
        got = self._get(self._vkey(model, version, name))
        if got is None:
            return None
        out = self.cache / self.bucket / self._k(self._vkey(model, version, name))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(got[0])
        os.replace(tmp, out)
        return out


def open_registry(uri: str) -> Registry:
    return S3Registry(uri) if uri.startswith("s3://") else LocalRegistry(uri)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobs.registry", description="List, inspect, promote and roll back models.")
    p.add_argument("--conf", default=os.environ.get("TRAINYARD_CONF", "conf/local.yaml"))
    p.add_argument("--model", default=os.environ.get("TRAINYARD_DATASET", "cards"), help="model name (= dataset name)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="versions and aliases")
    s = sub.add_parser("show", help="a version's manifest")
    s.add_argument("version", nargs="?", help="default: the champion")
    h = sub.add_parser("history", help="the event log: every alias move, who made it and why")
    h.add_argument("--alias", default=None, help="only this alias (default: all)")
    pr = sub.add_parser("promote", help="point an alias at a version (a person's decision; logged)")
    pr.add_argument("version")
    pr.add_argument("--alias", default="champion")
    pr.add_argument("--reason", default="manual promote")
    rb = sub.add_parser("rollback", help="walk the alias one move back along its history (twice: two moves)")
    rb.add_argument("--alias", default="champion")
    a = p.parse_args(argv)
    try:
        reg = open_registry(Settings.load(a.conf).registry)
        if a.cmd == "list":
            champ = (reg.alias(a.model, "champion") or {}).get("version")
            chall = (reg.alias(a.model, "challenger") or {}).get("version")
            for m in reg.versions(a.model):
                mark = "*" if m["version"] == champ else "~" if m["version"] == chall else " "
                from jobs.metrics import headline  # pyspark only when a model's figures are shown
                print(f"{mark} {m['version']}  ds={m.get('ds')}  {headline(m.get('metrics') or {})}  sha256={m['sha256'][:12]}")
            print(f"champion: {champ}  (*)\nchallenger: {chall}  (~, scored in the shadow until promote decides)")
        elif a.cmd == "show":
            version = a.version or (reg.alias(a.model, "champion") or {}).get("version")
            if not version:
                raise RegistryError(f"model '{a.model}' has no champion")
            print(json.dumps(reg.manifest(a.model, version), indent=2))
        elif a.cmd == "history":
            for e in reg.history(a.model, a.alias):
                print(f"{e['at']}  {e['alias']:<10} {e.get('event', 'move'):<8} {e.get('previous')} -> {e['version']}  "
                      f"by {e.get('actor', '?')}: {e.get('reason', '')}")
        elif a.cmd == "promote":
            print(json.dumps(reg.set_alias(a.model, a.alias, a.version, reason=a.reason, event="promote"), indent=2))
        elif a.cmd == "rollback":
            print(json.dumps(reg.rollback(a.model, a.alias), indent=2))
    except TrainyardError as e:
        print(f"trainyard registry FAILED: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
