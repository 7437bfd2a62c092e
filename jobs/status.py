"""Status: where each dataset's models and daily scoring stand, in a few lines, without starting Spark.

    python -m jobs.status [--dataset NAME] [--conf conf/local.yaml] [--days 7]      (make status)

Per dataset: the champion and the challenger (version, ds, holdout AUC, since when and why), the last scored
day (rows, who served) and every fallback day among the last ``--days`` scored ones (who served instead and
why), the last shadow decision of ``promote``, and the last monitored day's verdict with its drift report. It
reads the registry and the run folders' records (each scoring's ``lineage/score.json``, each decision's
``promote/decision.json``, each monitored day's ``monitor/verdict.json``), not the Delta tables."""
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


def newest(runs: str, dataset: str, sub: str, name: str) -> tuple[dict[str, Any], str] | None:
    """(the document, its folder) of the newest run folder holding ``<sub>/<name>``, or None."""
    for folder in reversed(storage.folders(storage.join(runs, dataset))):
        where = storage.join(runs, dataset, folder, sub)
        doc = _read(where, name)
        if doc:
            return doc, where
    return None


def _model_line(reg, name: str, alias: str) -> str:
    doc = reg.alias(name, alias)
    if not doc:
        return f"  {alias:<10} none"
    m = reg.manifest(name, doc["version"])
    from jobs.metrics import headline  # pyspark only when a model's figures are shown
    return (f"  {alias:<10} {doc['version']}  ds {m.get('ds')}  holdout {headline(m.get('metrics') or {})}  "
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
    found = newest(settings.runs, name, "promote", "decision.json")
    if found:
        decision = found[0]
        lines.append(f"  promote    {decision['ds']}: {decision['decision'].upper()} challenger {decision['challenger']} "
                     f"({decision['why'][:160]})")
    found = newest(settings.runs, name, "monitor", "verdict.json")
    if found:
        verdict, where = found
        signals = [s for s, v in verdict["signals"].items() if v["on"]]
        lines.append(f"  monitor    {verdict['ds']}: {'RETRAINING TRIGGERED' if verdict['retrain'] else 'no retraining'} "
                     f"(signals on: {', '.join(signals) or 'none'}): {verdict['reason'][:200]}")
        lines.append(f"             drift report {storage.join(where, 'report.html')}")
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
