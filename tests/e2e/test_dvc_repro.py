"""The local loop with a team: `dvc repro` on a fresh copy of the repository runs the same step CLIs on the
sample, `dvc push` sends every output to the team's S3 remote (moto's server on loopback), and a colleague's
fresh `git clone` gets them with `dvc pull`: its `dvc repro` has nothing to rerun and `dvc metrics diff` is
empty. The committed dvc.lock matches the code it hashes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BUCKET = "trainyard-dvc"


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def _copy_of_the_repository(dest: Path, env: dict[str, str]) -> None:
    """The tracked and untracked-but-not-ignored files, committed in a new git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        _run(args, dest, env)


def _code_changed_since_the_lock(repo: Path, env: dict[str, str]) -> list[str]:
    """The dependencies of dvc.lock's stages that are files of the repository (not the sample's data) whose
    content differs from the hash the lock recorded."""
    status = json.loads(_run([str(Path(sys.executable).parent / "dvc"), "status", "--json"], repo, env) or "{}")
    changed = []
    for stage, entries in status.items():
        for entry in entries:
            for path, state in (entry.get("changed deps") or {}).items() if isinstance(entry, dict) else []:
                if not path.startswith("data/") and state == "modified":
                    changed.append(f"{stage}: {path}")
    return changed


def test_dvc_repro_push_then_a_fresh_clone_pulls_and_has_nothing_to_rerun(tmp_path, s3_server):
    import boto3
    env = {**os.environ, **s3_server, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "TRAINYARD_S3_BUCKET": BUCKET, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    dvc = str(Path(sys.executable).parent / "dvc")
    mine = tmp_path / "mine"
    _copy_of_the_repository(mine, env)
    assert _code_changed_since_the_lock(mine, env) == [], "dvc.lock is stale: run `make dvc-repro` and commit dvc.lock"

    _run([dvc, "repro"], mine, env)
    shown = _run([dvc, "metrics", "show"], mine, env)
    assert "auc" in shown and "pr_auc" in shown
    assert (mine / "data" / "sample" / "registry" / "cards" / "aliases" / "champion.json").exists()
    _run(["make", "dvc-remote", f"DVC={dvc}"], mine, env)
    _run([dvc, "push"], mine, env)
    _run(["git", "add", "-A"], mine, env)
    _run(["git", "commit", "-qm", "dvc repro"], mine, env)

    theirs = tmp_path / "theirs"  # a colleague's fresh clone: the code, dvc.lock and the metrics, no data
    _run(["git", "clone", "-q", str(mine), str(theirs)], tmp_path, env)
    assert not (theirs / "data" / "sample" / "lake").exists()
    _run(["make", "dvc-remote", f"DVC={dvc}"], theirs, env)
    _run([dvc, "pull"], theirs, env)
    repro = _run([dvc, "repro"], theirs, env)
    assert "Running stage" not in repro, repro
    assert "up to date" in _run([dvc, "status"], theirs, env)
    assert _run([dvc, "metrics", "diff"], theirs, env).strip() == ""
    champion = "data/sample/registry/cards/aliases/champion.json"
    assert (theirs / champion).read_text() == (mine / champion).read_text()
