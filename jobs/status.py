"""Status: where each dataset's models and daily scoring stand, in a few lines, without starting Spark.

    python -m jobs.status [--dataset NAME] [--conf conf/local.yaml] [--days 7]      (make status)

Per dataset: the last runs of its DAGs (outcome, duration, the failed tasks), from Airflow's metadata database;
the champion and the challenger (version, ds, holdout AUC, since when and why), the last scored
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


DAG_KINDS = ("train_pipeline", "score_pipeline", "monitor_pipeline")


def dag_runs(dag_ids: list[str], last: int = 3) -> dict[str, list[dict[str, Any]]] | None:
    """The ``last`` runs of each DAG, newest first: run id, logical date, state, duration (first task start
    to last task end) and failed tasks, from Airflow's metadata database (``AIRFLOW_HOME``); None when there
    is none yet."""
    home = os.environ.get("AIRFLOW_HOME")
    if not home or not any(os.path.exists(os.path.join(home, f)) for f in ("airflow.db", "airflow.cfg")):
        return None
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import func, select
    out: dict[str, list[dict[str, Any]]] = {}
    with create_session() as s:
        for dag_id in dag_ids:
            runs = s.execute(select(DagRun.run_id, DagRun.logical_date, DagRun.state)
                             .where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(last)).all()
            out[dag_id] = []
            for run_id, logical, state in runs:
                began, ended = s.execute(select(func.min(TI.start_date), func.max(TI.end_date))
                                         .where(TI.dag_id == dag_id, TI.run_id == run_id)).one()
                failed = s.scalars(select(TI.task_id).where(TI.dag_id == dag_id, TI.run_id == run_id,
                                                            TI.state.in_(("failed", "upstream_failed")))).all()
                out[dag_id].append({"run_id": run_id, "ds": logical.date().isoformat() if logical else "-",
                                    "state": str(state), "seconds": (ended - began).total_seconds() if began and ended else None,
                                    "failed": list(failed)})
    return out


def _dag_lines(runs: dict[str, list[dict[str, Any]]] | None, name: str) -> list[str]:
    if runs is None:
        return ["  dag runs   none recorded yet (make run, make score, or the scheduler: make airflow)"]
    lines = []
    for kind in DAG_KINDS:
        recent = runs.get(f"{kind}__{name}") or []
        if not recent:
            continue
        lines.append(f"  {kind:<17}" + "; ".join(
            f"{r['ds']} {r['state'].upper() if r['state'] != 'success' else 'success'}"
            + (f" in {r['seconds'] / 60:.1f} min" if r["seconds"] is not None else "")
            + (f" (failed: {', '.join(r['failed'])})" if r["failed"] else "") for r in recent))
    return lines or ["  dag runs   none of this dataset's DAGs has run yet"]


def report(settings: Settings, name: str, days: int, runs: dict[str, list[dict[str, Any]]] | None = None) -> list[str]:
    from jobs.registry import open_registry
    reg = open_registry(settings.registry)
    lines = [f"== {name} ==", *_dag_lines(runs, name), _model_line(reg, name, "champion"), _model_line(reg, name, "challenger")]
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
        runs = dag_runs([f"{kind}__{n}" for n in names for kind in DAG_KINDS])
        for name in names:
            print("\n".join(report(settings, name, a.days, runs)))
    except TrainyardError as e:
        print(f"trainyard status FAILED: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
