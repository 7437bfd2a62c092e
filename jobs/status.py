"""Status: where each dataset's models and daily scoring stand, in a few lines, without starting Spark.

    python -m jobs.status [--dataset NAME] [--conf conf/local.yaml] [--days 7]      (make status)

Per dataset: the champion and the challenger (version, ds, holdout AUC, since when and why), the last scored
day (rows, who served) and every fallback day among the last ``--days`` scored ones (who served instead and
why), and the last shadow decision of ``promote``. It reads the registry and the run folders' records (each
scoring's ``lineage/score.json``, each decision's ``promote/decision.json``), not the Delta tables."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from jobs.common import storage
from jobs.common.config import DatasetSpec, Settings, dataset_dirs
from jobs.common.errors import TrainyardError


def _read(folder: str, name: str) -> dict[str, Any] | None:
    """The JSON file ``name`` in ``folder`` (local or s3://), or None when it is not there."""
    return json.loads(storage.read_bytes(storage.join(folder, name))) if name in storage.names(folder) else None


def scoring_days(runs: str, dataset: str) -> list[dict[str, Any]]:
    """The scoring record of every day that was scored, oldest first: its ``lineage/score.json`` counts."""
    out = []
    for folder in storage.folders(storage.join(runs, dataset)):
        if folder.startswith("ds="):
            doc = _read(storage.join(runs, dataset, folder, "lineage"), "score.json")
            if doc:
                out.append({"ds": folder[3:], **doc.get("counts", {})})
    return out


def last_decision(runs: str, dataset: str) -> dict[str, Any] | None:
    for folder in reversed(storage.folders(storage.join(runs, dataset))):
        doc = _read(storage.join(runs, dataset, folder, "promote"), "decision.json")
        if doc:
            return doc
    return None


def _model_line(reg, name: str, alias: str) -> str:
    doc = reg.alias(name, alias)
    if not doc:
        return f"  {alias:<10} none"
    m = reg.manifest(name, doc["version"])
    auc = (m.get("metrics") or {}).get("auc")
    return (f"  {alias:<10} {doc['version']}  ds {m.get('ds')}  holdout auc {auc if auc is None else round(auc, 4)}  "
            f"since {doc.get('at', '?')[:19]} ({doc.get('event')}: {doc.get('reason', '')[:90]})")


def report(settings: Settings, name: str, days: int) -> list[str]:
    from jobs.registry import open_registry
    reg = open_registry(settings.registry)
    lines = [f"== {name} ==", _model_line(reg, name, "champion"), _model_line(reg, name, "challenger")]
    scored = scoring_days(settings.runs, name)
    if not scored:
        lines.append("  scoring    no day scored yet (python -m jobs.score --ds D, or score_pipeline__" + name + ")")
    else:
        last = scored[-1]
        lines.append(f"  scoring    last day {last['ds']}: {last.get('rows')} rows by {last.get('served_by')} "
                     f"{last.get('model_version')}")
        recent = scored[-days:]
        fallbacks = [d for d in recent if str(d.get("served_by", "")).startswith("fallback:")]
        lines.append(f"             fallback days among the last {len(recent)} scored: {len(fallbacks)}")
        lines += [f"             FALLBACK {d['ds']}: {d['served_by']} {d.get('model_version')} because {d.get('reason')}"
                  for d in fallbacks]
    decision = last_decision(settings.runs, name)
    if decision:
        lines.append(f"  promote    {decision['ds']}: {decision['decision'].upper()} challenger {decision['challenger']} "
                     f"({decision['why'][:160]})")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobs.status", description=__doc__.strip().splitlines()[0])
    p.add_argument("--conf", default=os.environ.get("TRAINYARD_CONF", "conf/local.yaml"))
    p.add_argument("--dataset", default=None, help="one dataset (default: every dataset spec)")
    p.add_argument("--days", type=int, default=7, help="scored days whose fallbacks are listed")
    a = p.parse_args(argv)
    try:
        settings = Settings.load(a.conf)
        names = [a.dataset] if a.dataset else sorted({DatasetSpec.load(str(f)).name for d in dataset_dirs()
                                                       for f in d.glob("*.yaml")})
        for name in names:
            print("\n".join(report(settings, name, a.days)))
    except TrainyardError as e:
        print(f"trainyard status FAILED: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
