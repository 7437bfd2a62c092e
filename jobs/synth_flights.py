"""Deterministic generator of a flights landing zone (the ``flights`` dataset): scheduled flights of a fleet
of aircraft (tails) between 12 hubs and 288 spoke airports, and hourly weather observations at every
airport, the time-varying second source a flight is joined to as of its departure.

Layout written under ``out`` (one folder per landing day, CSV files, header row)::

    flights/ds=YYYY-MM-DD/part-00000.csv   flight_id, dep_ts, carrier, tail_num, origin, dest, distance_km,
                                           arr_ts, arr_delay   (the flights departing that day, with their outcome)
    weather/ds=YYYY-MM-DD/part-00000.csv   obs_id, obs_ts, airport, wind_kt, precip_mm, visibility_km
    <source>/ds=YYYY-MM-DD/_SUCCESS        (the day is complete; written last)

Each tail flies four legs a day from its home hub: hub -> spoke -> hub -> spoke -> hub, each leg scheduled
50 minutes after the previous one's scheduled arrival. Spokes are drawn with Zipf-like weights, so a few
dozen destinations are common and hundreds are rare (a learned vocabulary's case).

What a model can learn, and from what:

- **weather at the origin** (an as-of join): storms at an airport last 2-6 hours. Ground delays (up to 70
  minutes) and cancellations are declared from the latest observation before departure (hourly, at minute
  55), whose wind, precipitation and visibility are noisy readings of the storm's intensity;
- **the aircraft's previous leg** (a late-known column): a tail cannot leave before its inbound leg arrived
  and was turned around (35 minutes), so an inbound delay propagates. That delay is known only once the
  inbound leg has arrived (``arr_delay`` is known at ``arr_ts``): an inbound leg that has not arrived by
  the departure time is itself the sign of a delay;
- **the destination**: 15% of the airports are congested (about 12 minutes more on arrival); a storm at
  the destination when the flight arrives adds up to 20 minutes (the observations before departure hint
  at it).

Cancelled flights have no arrival (``arr_ts`` and ``arr_delay`` empty): their label is null and the ETL
quarantines them (``null_label``). Carrier has no effect on delays. The same arguments give byte-identical
files.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.synth import _atomic_csv, _unif, mark_complete

HUBS = np.array([f"H{i:02d}" for i in range(1, 13)])
SPOKES = np.array([f"S{i:03d}" for i in range(1, 289)])
AIRPORTS = np.concatenate([HUBS, SPOKES])
CARRIERS = np.array(["AA", "DL", "UA", "WN", "B6", "AS"])
SPOKE_P = 1.0 / np.arange(1, len(SPOKES) + 1) ** 1.1
SPOKE_P /= SPOKE_P.sum()
TS_FMT = "%Y-%m-%d %H:%M:%S"
LEGS = 4
TURN_MIN, SCHEDULED_TURN_MIN = 35, 50


@dataclass(frozen=True)
class FlightsConfig:
    start: dt.date
    days: int
    rows_per_day: int     # flights a day (LEGS per tail)
    seed: int = 11

    @property
    def tails(self) -> int:
        return max(6, self.rows_per_day // LEGS)


def storm_intensity(cfg: FlightsConfig, day_index: int) -> np.ndarray:
    """(airports x 24) intensity in [0, 1] of each airport's hours on one day: a storm on 20% of the days of
    an airport, starting between 06:00 and 20:00, 2-6 hours long, of one peak intensity."""
    idx = np.arange(len(AIRPORTS), dtype=np.int64) * 100_003 + day_index
    salt = cfg.seed * 7919
    has = _unif(idx, salt + 1) < 0.2
    start = 6 + (_unif(idx, salt + 2) * 15).astype(int)
    length = 2 + (_unif(idx, salt + 3) * 5).astype(int)
    peak = 0.4 + 0.6 * _unif(idx, salt + 4)
    hours = np.arange(24)[None, :]
    on = has[:, None] & (hours >= start[:, None]) & (hours < (start + length)[:, None])
    return np.where(on, peak[:, None], 0.0)


def weather_day(cfg: FlightsConfig, day_index: int, storms: np.ndarray) -> pd.DataFrame:
    """Hourly observations at every airport, at minute 55 of each hour, of that hour's conditions."""
    day = cfg.start + dt.timedelta(days=day_index)
    rng = np.random.default_rng([cfg.seed, day_index, 1])
    a, h = np.meshgrid(np.arange(len(AIRPORTS)), np.arange(24), indexing="ij")
    w = storms[a, h].ravel()
    n = w.size
    base = pd.Timestamp(day)
    ts = base + pd.to_timedelta(h.ravel() * 60 + 55, unit="m")
    return pd.DataFrame({
        "obs_id": [f"W{day:%Y%m%d}-{i:05d}" for i in range(n)],
        "obs_ts": ts.strftime(TS_FMT),
        "airport": AIRPORTS[a.ravel()],
        "wind_kt": np.round(np.maximum(0, 8 + 30 * w + rng.normal(0, 4, n)), 1),
        "precip_mm": np.round(np.where(w > 0, 12 * w * rng.uniform(0.3, 1.2, n), 0.0), 1),
        "visibility_km": np.round(np.clip(10 - 8.5 * w + rng.normal(0, 0.8, n), 0.2, 10), 1),
    })


def flights_day(cfg: FlightsConfig, day_index: int, storms: np.ndarray) -> pd.DataFrame:
    """Every tail's four legs of one day, flown in order: delays propagate from leg to leg."""
    day = cfg.start + dt.timedelta(days=day_index)
    rng = np.random.default_rng([cfg.seed, day_index, 2])
    n = cfg.tails
    tail = np.arange(n)
    home = tail % len(HUBS)
    carrier = CARRIERS[(_unif(tail.astype(np.int64), cfg.seed * 31) * len(CARRIERS)).astype(int)]
    congested = _unif(np.arange(len(AIRPORTS), dtype=np.int64), cfg.seed * 13) < 0.15
    dist = 200 + (_unif(np.arange(len(AIRPORTS), dtype=np.int64), cfg.seed * 17) * 2300)  # hub <-> airport, km
    spokes = [len(HUBS) + np.searchsorted(np.cumsum(SPOKE_P), rng.random(n), side="right").clip(0, len(SPOKES) - 1)
              for _ in range(LEGS // 2)]
    route = [home, spokes[0], home, spokes[1], home]
    sched_dep = 6 * 60 + rng.integers(0, 121, n).astype(float)  # minutes after the day's midnight
    ready = np.full(n, -np.inf)  # when the aircraft can leave (its inbound leg arrived and was turned)
    rows = []
    for leg in range(LEGS):
        origin, dest = route[leg], route[leg + 1]
        km = dist[np.where(origin < len(HUBS), dest, origin)]
        block = np.round(30 + km / 12)  # whole minutes: every scheduled time is on a minute
        # ground delays are declared from the latest observation before departure (minute 55 of an hour)
        observed = (sched_dep - 56) // 60
        w_origin = np.where(observed >= 0, storms[origin, np.clip(observed, 0, 23).astype(int)], 0.0)
        dep_delay = np.maximum(0, ready - sched_dep) + 70 * w_origin * rng.uniform(0.6, 1.0, n) \
            + rng.exponential(6, n) * (rng.random(n) < 0.3)
        arr_hour = np.clip(((sched_dep + block + dep_delay) // 60).astype(int), 0, 23)
        arr_delay = dep_delay + rng.normal(-4, 6, n) + 20 * storms[dest, arr_hour] + 12 * congested[dest]
        cancelled = ((w_origin > 0.8) & (rng.random(n) < 0.4)) | (rng.random(n) < 0.01)
        sched_arr = sched_dep + block
        arrival = sched_arr + arr_delay
        rows.append(pd.DataFrame({
            "tail": tail, "leg": leg, "dep": sched_dep, "carrier": carrier, "origin": AIRPORTS[origin],
            "dest": AIRPORTS[dest], "distance_km": np.round(km, 0), "arr": np.where(cancelled, np.nan, arrival),
            "arr_delay": np.where(cancelled, np.nan, np.round(arr_delay, 0))}))
        ready = np.where(cancelled, -np.inf, arrival + TURN_MIN)  # a cancelled leg: a spare aircraft flies on
        sched_dep = sched_arr + SCHEDULED_TURN_MIN
    df = pd.concat(rows, ignore_index=True).sort_values(["dep", "tail"], kind="stable", ignore_index=True)
    base = pd.Timestamp(day)
    arr_ts = base + pd.to_timedelta(df["arr"].round(), unit="m")
    return pd.DataFrame({
        "flight_id": [f"F{day:%Y%m%d}-{t:04d}-{g}" for t, g in zip(df["tail"], df["leg"])],
        "dep_ts": (base + pd.to_timedelta(df["dep"].round(), unit="m")).dt.strftime(TS_FMT),
        "carrier": df["carrier"], "tail_num": [f"N{t:04d}" for t in df["tail"]], "origin": df["origin"],
        "dest": df["dest"], "distance_km": df["distance_km"],
        "arr_ts": arr_ts.dt.strftime(TS_FMT).where(df["arr"].notna(), ""),
        "arr_delay": df["arr_delay"].map(lambda v: "" if np.isnan(v) else str(int(v))),
    })


def generate(cfg: FlightsConfig, out: Path) -> dict[str, int]:
    counts = {"flights": 0, "weather": 0}
    for d in range(cfg.days):
        day = cfg.start + dt.timedelta(days=d)
        storms = storm_intensity(cfg, d)
        for name, frame in (("flights", flights_day(cfg, d, storms)), ("weather", weather_day(cfg, d, storms))):
            folder = out / name / f"ds={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_csv(frame, folder / "part-00000.csv")
            counts[name] += len(frame)
    mark_complete(out, ("flights", "weather"), cfg.start, cfg.days)
    return counts
