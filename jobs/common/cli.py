"""The shell every step shares: ``python -m jobs.<step> --ds YYYY-MM-DD [--start-ds] [--conf] [--dataset]``.

It parses the arguments, loads settings, the dataset spec and params, runs the step, records what the step
read and wrote (Delta versions, counts) in the run's lineage folder, and turns expected failures into one
clear line on stderr and a non-zero exit code instead of a stack trace.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jobs.common import storage
from jobs.common.config import DatasetSpec, Settings, effective_params, load_params, parse_ds
from jobs.common.errors import AlreadyDone, ConfigError, TrainyardError
from jobs.common.files import write_json_atomic


STEP_DONE = "trainyard step done:"
_STARTED = time.perf_counter()  # a step is a process of its own: its time counts from here (imports, JVM, work)


@dataclass
class StepContext:
    step: str
    ds: dt.date
    start_ds: dt.date
    dataset: DatasetSpec
    settings: Settings
    params: dict[str, Any]
    run_id: str
    reads: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why the run was started (the monitor's retraining reason); the manifest records it
    rows: int | None = None  # the rows the step processed, and its key figure: its line when it finishes
    figure: str = ""

    def table(self, name: str) -> str:
        return f"{self.settings.lake}/{self.dataset.name}/{name}"

    @property
    def run_uri(self) -> str:
        """The run folder in ``storage.runs``: a local path, or an ``s3://`` URI every host reaches."""
        return storage.join(self.settings.runs, self.dataset.name, f"ds={self.ds.isoformat()}")

    @property
    def run_dir(self) -> Path:
        """The run folder as local files: the folder itself, or this host's copy of an ``s3://`` one
        (``run_step`` pulls it before the step and pushes what changed after it)."""
        if storage.is_remote(self.settings.runs):
            return storage.local_copy(self.settings.runs, self.dataset.name, f"ds={self.ds.isoformat()}")
        return Path(self.run_uri)

    def step_params(self) -> dict[str, Any]:
        return dict(self.params.get(self.step, {}))

    @property
    def cutoff(self) -> dt.datetime:
        """End of the data interval: nothing known at or after this instant may be used."""
        return dt.datetime.combine(self.ds + dt.timedelta(days=1), dt.time())

    @property
    def days(self) -> str:
        return self.ds.isoformat() if self.start_ds == self.ds else f"{self.start_ds}..{self.ds}"

    def done_line(self, seconds: float) -> str:
        """The line a finished step prints (``STEP_DONE`` first; ``make run`` shows these as they come)."""
        rows = f"{self.rows:>11,} rows" if self.rows is not None else " " * 16
        return f"{STEP_DONE} {self.step:<9} {self.days:<22} {rows} {seconds:7.1f} s   {self.figure}".rstrip()

    def record(self) -> Path:
        """Write the step's lineage: the Delta versions it read and wrote and its counts."""
        out = self.run_dir / "lineage" / f"{self.step}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"step": self.step, "dataset": self.dataset.name, "ds": self.ds.isoformat(),
               "start_ds": self.start_ds.isoformat(), "run_id": self.run_id,
               "reads": self.reads, "writes": self.writes, "counts": self.counts}
        write_json_atomic(out, doc)
        return out


def parser(step: str, doc: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m jobs.{step}", description=(doc or "").strip().splitlines()[0] if doc else None)
    # the DAG passes its values as environment variables (never spliced into a shell command line)
    ds = os.environ.get("TRAINYARD_DS") or None
    p.add_argument("--ds", required=ds is None, default=ds, help="the data interval (day) this run is for, YYYY-MM-DD")
    p.add_argument("--start-ds", default=os.environ.get("TRAINYARD_START_DS") or None,
                   help="first day of a range processed in one go (backfill); default: --ds alone")
    p.add_argument("--conf", default=os.environ.get("TRAINYARD_CONF", "conf/local.yaml"), help="environment settings")
    p.add_argument("--dataset", default=os.environ.get("TRAINYARD_DATASET", "cards"),
                   help="dataset spec name (conf/datasets/NAME.yaml) or path")
    p.add_argument("--params", default=os.environ.get("TRAINYARD_PARAMS", "params.yaml"), help="experiment knobs")
    p.add_argument("--reason", default=os.environ.get("TRAINYARD_RUN_REASON", ""),
                   help="why this run was started (recorded in a published model's manifest)")
    p.add_argument("--unless-done", action="store_true",
                   help="exit 98 without doing anything when this ds is already done (steps that can tell: etl, validate)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one param for this run, dotted key and YAML value (e.g. tune.enabled=true); repeatable")
    return p


def apply_overrides(params: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``tune.enabled=true`` sets params['tune']['enabled'] = True (values parsed as YAML)."""
    import yaml
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE with a dotted key, e.g. tune.enabled=true")
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set '{item}': '{part}' is a value in params, not a section")
            node = child
        node[leaf] = yaml.safe_load(raw)
    return params


def build_context(step: str, args: argparse.Namespace) -> StepContext:
    ds = parse_ds(args.ds)
    start = parse_ds(args.start_ds) if args.start_ds else ds
    if start > ds:
        raise ConfigError(f"--start-ds {start} is after --ds {ds}")
    run_id = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or f"cli__{ds.isoformat()}"
    spec = DatasetSpec.load(args.dataset)
    params = apply_overrides(effective_params(load_params(args.params), spec), args.overrides)
    return StepContext(step=step, ds=ds, start_ds=start, dataset=spec, settings=Settings.load(args.conf), params=params,
                       run_id=run_id, reason=args.reason or "")


def run_step(step: str, body: Callable[[StepContext], Any], argv: list[str] | None = None,
             doc: str | None = None, record: bool = True, done: Callable[[StepContext], str | None] | None = None) -> None:
    """Run ``body`` as the step's CLI. ``done`` tells whether the ds is already done (why, or None): with
    ``--unless-done`` such a ds is skipped (AlreadyDone)."""
    args = parser(step, doc).parse_args(argv)
    try:
        ctx = build_context(step, args)
        remote = storage.is_remote(ctx.settings.runs)
        pulled = storage.pull(ctx.run_uri, ctx.run_dir) if remote else {}
        if args.unless_done:
            if done is None:
                raise ConfigError(f"--unless-done: {step} cannot tell whether a ds is done; run it without the flag")
            why = done(ctx)
            if why:
                raise AlreadyDone(why)
        body(ctx)
        if record:
            ctx.record()
        if remote:
            storage.push(ctx.run_dir, ctx.run_uri, pulled)
        if record:
            print(ctx.done_line(time.perf_counter() - _STARTED), flush=True)
    except AlreadyDone as e:
        print(f"trainyard {step}: nothing to do, skipped: {e}")
        sys.exit(e.exit_code)
    except TrainyardError as e:
        print(f"trainyard {step} FAILED [{type(e).__name__}]: {e}", file=sys.stderr)
        if os.environ.get("TRAINYARD_DEBUG"):
            traceback.print_exc()
        sys.exit(e.exit_code)
