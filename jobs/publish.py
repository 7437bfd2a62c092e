"""Publish: only a blessed model. Checks that the blessing was given to this exact artifact (sha256), writes
an immutable registry version (artifact, model card, report, manifest with sha256 and lineage: the Delta
versions every step read, the DVC data hash, params, metrics, blessing, git commit) atomically, manifest last,
then moves the ``champion`` alias forward only:

- by compare-and-swap from the version the evaluation compared against (``blessing.champion_version``): if
  the champion moved since, nothing moves and the task fails (re-run evaluate against the new champion);
- never backwards: a run for a ds older than the champion's (a backfill) is published as a version and
  leaves the champion where it is (a person may promote it: ``python -m jobs.registry promote``).

Exit code 99 (``NotBlessed``) means "not blessed, nothing to publish": the DAG marks the task skipped.
Integrity failures (no evaluation, an artifact other than the one evaluated, a champion that moved) fail it."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from jobs.common.cli import StepContext, run_step
from jobs.common.config import REPO_ROOT
from jobs.common.errors import IntegrityError, NotBlessed
from jobs.common.files import artifact_path, sha256_file


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def dvc_data_hash(landing: str, dataset: str) -> dict[str, Any] | None:
    """The DVC hash of the dataset's landing data when DVC versions it (an out in dvc.lock, e.g. the
    `dvc repro` sample); None when the landing is not under DVC (the local default, S3)."""
    import yaml
    lock = REPO_ROOT / "dvc.lock"
    if not lock.exists() or landing.startswith("s3"):
        return None
    try:
        target = (Path(landing) / dataset).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return None
    for stage, body in (yaml.safe_load(lock.read_text()).get("stages") or {}).items():
        for out in body.get("outs", []):
            if out.get("path") == target:
                return {"path": target, "md5": out.get("md5"), "stage": stage, "files": out.get("nfiles")}
    return None


def version_id(ds: str, sha: str) -> str:
    """Deterministic: a rerun of the same run publishes the same version, never a duplicate."""
    return f"{ds}-{sha[:12]}"


def build_manifest(ctx: StepContext, train_doc: dict, blessing: dict, metrics: dict, lineage: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": ctx.dataset.name, "version": version_id(ctx.ds.isoformat(), train_doc["sha256"]), "ds": ctx.ds.isoformat(),
        "artifact": "model.ubj", "format": "xgboost-ubj", "sha256": train_doc["sha256"],
        "feature_names": train_doc["feature_names"], "feature_types": train_doc["feature_types"], "label": train_doc["label"],
        "metrics": metrics, "blessing": {k: blessing[k] for k in ("blessed", "mode", "failed", "reasons")},
        "lineage": {"delta_versions_read": {step: doc.get("reads", {}) for step, doc in lineage.items()},
                    "tables_written": {step: doc.get("writes", {}) for step, doc in lineage.items()},
                    "dataset_spec": ctx.dataset.path, "git_commit": git_commit(), "run_id": ctx.run_id,
                    "dvc_data": dvc_data_hash(ctx.settings.landing, ctx.dataset.name)},
        "params": ctx.params,
        "train": {**{k: train_doc[k] for k in ("params", "counts", "num_workers", "best_iteration", "num_boosted_rounds")},
                  "trained_on": train_doc.get("trained_on")},  # absent from train.json written before the field
        "published_by": ctx.run_id,
    }


def check_blessing(run_dir: Path, ds) -> tuple[dict, dict, Path]:
    """(blessing, train.json, artifact) of a run whose evaluation blessed exactly the artifact train wrote.
    A missing evaluation or a changed artifact is an integrity failure; only "not blessed" is NotBlessed."""
    blessing_path = run_dir / "evaluation" / "blessing.json"
    if not blessing_path.exists():
        raise IntegrityError(f"no evaluation at {blessing_path}: run evaluate for ds={ds} before publish")
    blessing = json.loads(blessing_path.read_text())
    train_doc = json.loads((run_dir / "model" / "train.json").read_text())
    art = artifact_path(run_dir, train_doc)
    sha = sha256_file(art)
    if sha != train_doc["sha256"]:
        raise IntegrityError(f"{art}: sha256 {sha[:12]} differs from the {train_doc['sha256'][:12]} train recorded")
    if blessing["artifact_sha256"] != sha:
        raise IntegrityError(f"{art} (sha256 {sha[:12]}) is not the artifact that was evaluated "
                             f"({blessing['artifact_sha256'][:12]}); re-run evaluate")
    if not blessing["blessed"]:
        raise NotBlessed(f"model {sha[:12]} for ds={ds} is not blessed: {'; '.join(blessing['reasons'])}")
    if "champion_version" not in blessing:
        raise IntegrityError(f"{blessing_path} does not say which champion it was compared against; re-run evaluate")
    return blessing, train_doc, art


def move_champion(reg, model: str, version: str, ds: str, compared: str | None, run_id: str) -> dict[str, Any]:
    """Move ``champion`` to ``version`` only forward: from the version the evaluation compared against, and
    never to a ds older than the champion's. Returns what happened (``moved``, ``champion``, ``why``)."""
    from jobs.registry import AliasConflict
    current = reg.alias(model, "champion")
    held = current["version"] if current else None
    if held == version:
        return {"moved": False, "champion": held, "why": "already the champion"}
    held_ds = reg.manifest(model, held).get("ds") if held else None
    if held_ds and held_ds > ds:
        return {"moved": False, "champion": held,
                "why": f"the champion {held} is for a newer ds ({held_ds} > {ds}): published as a version, not promoted"}
    try:
        doc = reg.set_alias(model, "champion", version, reason=f"blessed against {compared} by run {run_id}",
                            expect=compared, event="publish")
    except AliasConflict:
        now = (reg.alias(model, "champion") or {}).get("version")
        raise IntegrityError(f"model '{model}': the champion is {now}, but the evaluation of {version} compared it "
                             f"against {compared}; nothing moved: re-run evaluate for ds={ds}, then publish") from None
    return {"moved": True, "champion": doc["version"], "previous": doc["previous"], "why": doc["reason"]}


def run(ctx: StepContext) -> None:
    from jobs.registry import open_registry
    run_dir = ctx.run_dir
    blessing, train_doc, art = check_blessing(run_dir, ctx.ds)
    lineage = {f.stem: json.loads(f.read_text()) for f in sorted((run_dir / "lineage").glob("*.json"))}
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    manifest = build_manifest(ctx, train_doc, blessing, metrics, lineage)
    ev = run_dir / "evaluation"
    files = {"model.ubj": art, "blessing.json": ev / "blessing.json", "evaluation.json": ev / "evaluation.json"}
    files.update({n: ev / n for n in ("report.html", "model_card.md") if (ev / n).exists()})  # older runs lack a card
    reg = open_registry(ctx.settings.registry)
    created = reg.publish(ctx.dataset.name, manifest["version"], files, manifest)
    # the alias moves last, only to a complete, verified version, and only forward
    moved = move_champion(reg, ctx.dataset.name, manifest["version"], ctx.ds.isoformat(), blessing["champion_version"],
                          ctx.run_id)
    ctx.counts.update({"version": manifest["version"], "created": created, **moved})
    where = reg.location(ctx.dataset.name, manifest["version"])
    print(f"publish {ctx.dataset.name}: version {manifest['version']} {'published' if created else 'already published'} "
          f"at {where}; champion {'-> ' if moved['moved'] else 'stays '}{moved['champion']} ({moved['why']})")


def main(argv: list[str] | None = None) -> None:
    run_step("publish", run, argv, __doc__)


if __name__ == "__main__":
    main()
