"""Publish: only a blessed model. Checks that the blessing was given to this exact artifact (sha256), writes
an immutable registry version (artifact, model card, report, manifest with sha256 and lineage: the Delta
versions every step read, the DVC data hash, params, metrics, blessing, git commit) atomically, manifest last,
then moves an alias forward only. Which alias is ``publish.mode``'s:

- ``shadow`` (the nightly default): the version becomes ``challenger``; the scoring DAG scores it beside the
  champion on live rows and ``jobs.promote`` decides, once their labels matured, whether it replaces the
  champion. A model with no champion to shadow becomes the champion at once.
- ``direct`` (``make run``): the version becomes ``champion``, by compare-and-swap from the version the
  evaluation compared against (``blessing.champion_version``): if the champion moved since, nothing moves and
  the task fails (re-run evaluate against the new champion).

Never backwards: a run for a ds older than the alias's version (or the champion's: a backfill) is published
as a version and leaves the aliases where they are (a person may promote it: ``python -m jobs.registry promote``).
The version holds the model and the baseline train fitted beside it (``jobs.model``), both checksummed.

Exit code 99 (``NotBlessed``) means "not blessed, nothing to publish": the DAG marks the task skipped.
Integrity failures (no evaluation, an artifact other than the one evaluated, a champion that moved) fail it."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from jobs.common.cli import StepContext, run_step
from jobs.common.config import REPO_ROOT
from jobs.common.errors import ConfigError, IntegrityError, NotBlessed
from jobs.common.files import artifact_path, sha256_file
from jobs.model import MODEL_FILE, baseline_from_run

MODES = ("shadow", "direct")


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
        "artifact": MODEL_FILE, "format": "xgboost-ubj", "sha256": train_doc["sha256"],
        "baseline": train_doc.get("baseline"), "profile": train_doc.get("profile"),
        "vocabularies": train_doc.get("vocabularies"),  # learned categoricals: scoring codes them as train did
        "classes": train_doc.get("classes"),  # multiclass: the order of the model's probabilities
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
        "trigger": {"run_id": ctx.run_id, "reason": ctx.reason or None},  # why the run was started (monitor)
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
    baseline_from_run(run_dir)  # the baseline is the one train wrote (ArtifactError otherwise)
    return blessing, train_doc, art


def move_alias(reg, model: str, alias: str, version: str, ds: str, expect: str | None, reason: str) -> dict[str, Any]:
    """Move ``alias`` to ``version`` only forward: from ``expect`` (compare-and-swap), and never to a ds older
    than the alias's (or, for the challenger, the champion's). Returns what happened (``moved``, ``alias``,
    ``version`` it holds, ``why``)."""
    from jobs.registry import AliasConflict
    current = reg.alias(model, alias)
    held = current["version"] if current else None
    if held == version:
        return {"moved": False, "alias": alias, "version": held, "why": f"already the {alias}"}
    for name in dict.fromkeys([alias, "champion"]):
        other = reg.alias(model, name)
        other_ds = reg.manifest(model, other["version"]).get("ds") if other else None
        if other_ds and other_ds > ds:
            return {"moved": False, "alias": alias, "version": held,
                    "why": f"the {name} {other['version']} is for a newer ds ({other_ds} > {ds}): published as a "
                           "version, not promoted"}
    try:
        doc = reg.set_alias(model, alias, version, reason=reason, expect=expect, event="publish")
    except AliasConflict:
        now = (reg.alias(model, alias) or {}).get("version")
        said = "the evaluation of {v} compared it against" if alias == "champion" else "this publish of {v} expected"
        raise IntegrityError(f"model '{model}': the {alias} is {now}, but {said.format(v=version)} {expect}; nothing "
                             f"moved: re-run evaluate for ds={ds}, then publish") from None
    return {"moved": True, "alias": alias, "version": doc["version"], "previous": doc["previous"], "why": doc["reason"]}


def publish_alias(reg, model: str, mode: str, version: str, ds: str, compared: str | None, run_id: str) -> dict[str, Any]:
    """The alias move of ``publish.mode``: ``direct`` moves the champion from the one the evaluation compared
    against; ``shadow`` makes the version the challenger (the champion, when there is none to shadow)."""
    if mode not in MODES:
        raise ConfigError(f"params publish.mode: '{mode}' is not one of {MODES}")
    champion = (reg.alias(model, "champion") or {}).get("version")
    if mode == "direct" or champion is None:
        why = f"blessed against {compared} by run {run_id}" + ("" if mode == "direct" else "; no champion to shadow")
        return move_alias(reg, model, "champion", version, ds, compared, why)
    held = (reg.alias(model, "challenger") or {}).get("version")
    return move_alias(reg, model, "challenger", version, ds, held,
                      f"blessed against champion {compared} by run {run_id}: shadow-scored until jobs.promote decides")


def run(ctx: StepContext) -> None:
    from jobs.registry import open_registry
    run_dir = ctx.run_dir
    blessing, train_doc, art = check_blessing(run_dir, ctx.ds)
    lineage = {f.stem: json.loads(f.read_text()) for f in sorted((run_dir / "lineage").glob("*.json"))}
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    manifest = build_manifest(ctx, train_doc, blessing, metrics, lineage)
    ev = run_dir / "evaluation"
    files = {MODEL_FILE: art, "blessing.json": ev / "blessing.json", "evaluation.json": ev / "evaluation.json"}
    for part in ("baseline", "profile"):  # published beside the model, each checksummed in the manifest
        if manifest[part]:
            files[manifest[part]["artifact"]] = run_dir / "model" / manifest[part]["artifact"]
    files.update({n: ev / n for n in ("report.html", "model_card.md") if (ev / n).exists()})  # older runs lack a card
    reg = open_registry(ctx.settings.registry)
    created = reg.publish(ctx.dataset.name, manifest["version"], files, manifest)
    # the alias moves last, only to a complete, verified version, and only forward
    mode = str(ctx.step_params().get("mode", "direct"))
    moved = publish_alias(reg, ctx.dataset.name, mode, manifest["version"], ctx.ds.isoformat(),
                          blessing["champion_version"], ctx.run_id)
    ctx.counts.update({"version": manifest["version"], "created": created, "mode": mode, **moved})
    where = reg.location(ctx.dataset.name, manifest["version"])
    ctx.figure = f"{moved['alias']} {'-> ' if moved['moved'] else 'stays '}{moved['version']}"
    print(f"publish {ctx.dataset.name}: version {manifest['version']} {'published' if created else 'already published'} "
          f"at {where}; {moved['alias']} {'-> ' if moved['moved'] else 'stays '}{moved['version']} ({moved['why']})")


def main(argv: list[str] | None = None) -> None:
    run_step("publish", run, argv, __doc__)


if __name__ == "__main__":
    main()
