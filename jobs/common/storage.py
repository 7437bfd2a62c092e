"""Where run folders live (``storage.runs``): a local directory, or ``s3://bucket/prefix`` that every host
reaches (boto3; any S3-compatible endpoint through AWS_ENDPOINT_URL, credentials from the standard AWS
environment).

A step works on its run folder as local files either way (``StepContext.run_dir``). With an ``s3://`` root
that folder is a copy: ``pull`` fills it from the root before the step (emptied first, so nothing of
another run stays), and ``push`` uploads what the step wrote or changed after it succeeded, and removes
what it deleted. A step that fails pushes nothing: the root keeps what the last successful step left. The
next step may run on another host (another Airflow worker) and pulls the same folder.

Checkpoints are the exception: the rank-0 XGBoost worker writes them during the fit, on whichever executor
it runs, so they go to the root directly (``write_bytes``, ``names``, ``read_bytes``, ``remove_tree`` take
a local path or an ``s3://`` URI) and are never pulled or pushed (``UNSYNCED``)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from jobs.common.files import sha256_file, write_bytes_atomic

UNSYNCED = ("model/checkpoints/",)  # written straight to the root by the fit's rank-0 worker


def is_remote(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(root: str, *parts: str) -> str:
    """``root`` / parts, for a local path or an ``s3://`` URI."""
    return "/".join([str(root).rstrip("/"), *parts]) if is_remote(root) else str(Path(root, *parts))


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key or prefix without surrounding slashes) of an ``s3://`` URI."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key.strip("/")


def s3_client():
    """The boto3 S3 client of run folders and the registry: endpoint and credentials from the standard AWS
    environment, retries in standard mode."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _keys(uri: str) -> list[str]:
    """The paths, relative to ``uri``, of every object under the ``s3://`` folder ``uri``."""
    bucket, prefix = split_uri(uri)
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return [o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])]


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` at once: a local file through a temporary name and a rename, an S3 object
    in one put."""
    if is_remote(uri):
        bucket, key = split_uri(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    write_bytes_atomic(Path(uri), data)


def read_bytes(uri: str) -> bytes:
    if is_remote(uri):
        bucket, key = split_uri(uri)
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()


def names(uri: str) -> list[str]:
    """The sorted names of the files directly in the folder ``uri`` (none if it does not exist)."""
    if is_remote(uri):
        return sorted(n for n in _keys(uri) if "/" not in n)
    path = Path(uri)
    return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []


def folders(uri: str) -> list[str]:
    """The sorted names of the folders directly in the folder ``uri`` (none if it does not exist)."""
    if is_remote(uri):
        bucket, prefix = split_uri(uri)
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/", Delimiter="/")
        return sorted(c["Prefix"][len(prefix) + 1:].rstrip("/") for page in pages for c in page.get("CommonPrefixes", []))
    path = Path(uri)
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def remove_tree(uri: str) -> None:
    if is_remote(uri):
        bucket, prefix = split_uri(uri)
        keys = [{"Key": f"{prefix}/{n}"} for n in _keys(uri)]
        for i in range(0, len(keys), 1000):
            s3_client().delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000]})
        return
    shutil.rmtree(uri, ignore_errors=True)


def local_copy(root: str, *parts: str) -> Path:
    """Where a step keeps its copy of the run folder ``root``/parts of an ``s3://`` root (this host's temp
    folder, one per root)."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "trainyard-runs" / digest / Path(*parts)


def _synced(rel: str) -> bool:
    return not rel.startswith(UNSYNCED)


def pull(uri: str, local: Path) -> dict[str, str]:
    """Empty ``local`` and fill it with the run folder ``uri``; returns {relative path: sha256} of what came
    (``push`` uploads only what differs from it)."""
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    bucket, prefix = split_uri(uri)
    client, got = s3_client(), {}
    for rel in _keys(uri):
        if not _synced(rel):
            continue
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, f"{prefix}/{rel}", str(target))
        got[rel] = sha256_file(target)
    return got


def push(local: Path, uri: str, pulled: dict[str, str]) -> list[str]:
    """Upload the files of ``local`` that are new or changed since ``pulled`` to the run folder ``uri``, and
    remove there what was pulled and is gone here; returns what it uploaded."""
    bucket, prefix = split_uri(uri)
    client, sent = s3_client(), []
    present = {p.relative_to(local).as_posix(): p for p in local.rglob("*") if p.is_file()}
    for rel, path in sorted(present.items()):
        if _synced(rel) and pulled.get(rel) != sha256_file(path):
            client.upload_file(str(path), bucket, f"{prefix}/{rel}")
            sent.append(rel)
    gone = [{"Key": f"{prefix}/{rel}"} for rel in pulled if rel not in present]
    if gone:
        client.delete_objects(Bucket=bucket, Delete={"Objects": gone})
    return sent
