"""`dvc repro` on a fresh copy of the repository runs the same step CLIs on the sample and
`dvc metrics show` prints the evaluation metrics."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_dvc_repro_from_a_fresh_copy(tmp_path):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    dest = tmp_path / "clone"
    for f in files:
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "TRAINYARD_IVY": str(REPO / "state" / "ivy")}
    repro = subprocess.run(["dvc", "repro"], cwd=dest, env=env, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    shown = subprocess.run(["dvc", "metrics", "show"], cwd=dest, env=env, capture_output=True, text=True, check=True).stdout
    assert "auc" in shown and "pr_auc" in shown
    assert (dest / "data" / "sample" / "registry" / "cards" / "aliases" / "champion.json").exists()
