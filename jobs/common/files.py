"""Small file helpers: atomic JSON writes and content hashes."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomic(path: Path, doc: Any) -> None:
    write_bytes_atomic(path, json.dumps(doc, indent=2, sort_keys=True, default=str).encode())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_path(run_dir: Path, train_doc: dict) -> Path:
    """The model file that a run's ``train.json`` names: relative to the run folder's ``model/``, so that the
    folder can move between hosts (``storage.runs`` on S3); absolute in runs written before that."""
    art = Path(train_doc["artifact"])
    return art if art.is_absolute() else run_dir / "model" / art
