"""Deterministic generator of a card-transaction landing zone (the default dataset, ``cards``).

Layout written under ``--out`` (one folder per landing day, CSV files, header row)::

    customers.csv                          customer_id, age_band, gender, region
    merchants.csv                          merchant_id, merchant_category, merchant_country
    transactions/ds=YYYY-MM-DD/part-NNNNN.csv
    transactions/ds=YYYY-MM-DD/part-late-YYYYMMDD-NNNNN.csv   (--late-rate: events of an earlier day, landed late)
    chargebacks/ds=YYYY-MM-DD/part-eYYYYMMDD.csv   (one file per day of the transactions it reports)
    <source>/ds=YYYY-MM-DD/_SUCCESS               (the day is complete; written last)

Fraud has learnable structure: compromised cards make *bursts* of several transactions minutes apart,
mostly at night, at merchants the customer never used, in risky categories, for amounts several times the
customer's usual. Elderly customers and one region are targeted a little more often, so fairness slices
show something. About 10% of frauds look ordinary (unlearnable) and a few chargebacks are "friendly".
Chargebacks (the labels) arrive 1-45 days after the transaction, in the feed of the day they arrive.

Per-customer attributes come from a counter-based hash of the customer index, so nothing per customer is
held in memory; transactions are produced and written in chunks, so a 10M-rows/day zone streams through a
few hundred MB. The same flags and seed always give byte-identical files.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

AGE_BANDS = np.array(["18-25", "26-35", "36-50", "51-65", "65+"])
AGE_P = np.array([0.15, 0.25, 0.30, 0.20, 0.10])
GENDERS = np.array(["F", "M", "X"])
GENDER_P = np.array([0.49, 0.49, 0.02])
REGIONS = np.array(["north", "south", "east", "west"])
CATEGORIES = np.array(["grocery", "fuel", "restaurant", "apparel", "travel", "pharmacy",
                       "electronics", "online_gaming", "jewelry", "gift_cards"])
RISKY = np.array([6, 7, 8, 9])  # indexes of the categories fraudsters favour
COUNTRIES = np.array(["GB", "FR", "DE", "ES", "US", "NG", "RU", "BR"])
CHANNELS = np.array(["chip", "contactless", "swipe", "online"])
CURRENCY = {"GB": "GBP", "US": "USD", "BR": "BRL", "NG": "NGN", "RU": "RUB"}
TS_FMT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class SynthConfig:
    start: dt.date
    days: int
    rows_per_day: int
    seed: int = 42
    customers: int = 0  # 0: rows_per_day // 2 (at least 500)
    fraud_rate: float = 0.015
    missing_merchant_rate: float = 0.002
    negative_amount_rate: float = 0.001
    duplicate_rate: float = 0.002
    malformed_ts_rate: float = 0.001
    late_rate: float = 0.0    # share of transactions that land 1-3 days after their event day (late arrivals)
    # drift injected from day index ``drift_from`` on (the days before are byte-identical to a run without it)
    drift_from: int | None = None
    amount_shift: float = 1.0     # every amount multiplied by this
    fraud_change: bool = False    # fraud stops looking like fraud: single transactions, at the customer's usual
                                  # merchants, hours, channels and amounts (only the labels tell, once they arrive)
    chunk_rows: int = 250_000

    @property
    def n_customers(self) -> int:
        return self.customers or max(500, self.rows_per_day // 2)

    @property
    def n_merchants(self) -> int:
        return max(200, self.n_customers // 20)


# ---------------------------------------------------------------- counter-based hashing (splitmix64)
def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    z = (x.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) % 2**64))
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _unif(x: np.ndarray, salt: int) -> np.ndarray:
    return (_mix(x, salt) >> np.uint64(11)).astype(np.float64) / float(2**53)


def _choice(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(p), u, side="right"), len(p) - 1)


def customer_attrs(idx: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Attributes of customers ``idx``: a pure function of (index, seed)."""
    s = seed * 101
    age = _choice(_unif(idx, s + 1), AGE_P)
    u1, u2 = _unif(idx, s + 4), _unif(idx, s + 5)
    normal = np.sqrt(-2 * np.log(np.maximum(u1, 1e-12))) * np.cos(2 * np.pi * u2)
    return {
        "age": age,
        "gender": _choice(_unif(idx, s + 2), GENDER_P),
        "region": (_unif(idx, s + 3) * len(REGIONS)).astype(int),
        "mean_amount": np.exp(3.2 + 0.15 * age + 0.5 * normal),  # typical spend grows with age
        "n_cards": 1 + (_unif(idx, s + 6) < 0.3).astype(int),
    }


def favourite_merchants(idx: np.ndarray, k: np.ndarray, seed: int, n_merchants: int) -> np.ndarray:
    return (_mix(idx * 8 + k, seed * 101 + 7) % np.uint64(n_merchants)).astype(np.int64)


def merchant_attrs(idx: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    s = seed * 101 + 50
    return {"category": (_unif(idx, s) * len(CATEGORIES)).astype(int),
            "country": _choice(_unif(idx, s + 1), np.array([.55, .1, .1, .08, .1, .03, .02, .02]))}


# ---------------------------------------------------------------- one chunk of one day
def _day_seconds(rng: np.random.Generator, n: int, night_share: float) -> np.ndarray:
    night = rng.random(n) < night_share
    day_s = np.clip(rng.normal(14.5 * 3600, 4 * 3600, n), 6 * 3600, 86399)
    night_s = rng.uniform(0, 6 * 3600, n)
    return np.where(night, night_s, day_s).astype(np.int64)


def generate_chunk(cfg: SynthConfig, day_index: int, chunk_index: int, n_rows: int, first_seq: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transactions and their chargebacks for one chunk: a pure function of its arguments."""
    rng = np.random.default_rng([cfg.seed, day_index, chunk_index])
    day = cfg.start + dt.timedelta(days=day_index)
    drifted = cfg.drift_from is not None and day_index >= cfg.drift_from
    changed = drifted and cfg.fraud_change
    n_fraud_target = rng.binomial(n_rows, cfg.fraud_rate)
    lens = rng.geometric(1 / 3.0, size=max(n_fraud_target, 1))  # burst sizes, mean 3
    if changed:
        lens = np.ones_like(lens)
    burst_len = lens[np.cumsum(lens) <= n_fraud_target]
    n_fraud = int(burst_len.sum())
    n_norm = n_rows - n_fraud

    # ordinary spend
    cust = rng.integers(0, cfg.n_customers, n_norm)
    attrs = customer_attrs(cust, cfg.seed)
    fav = favourite_merchants(cust, rng.integers(0, 5, n_norm), cfg.seed, cfg.n_merchants)
    merchant = np.where(rng.random(n_norm) < 0.85, fav, rng.integers(0, cfg.n_merchants, n_norm))
    secs = _day_seconds(rng, n_norm, 0.04)
    amount = attrs["mean_amount"] * rng.lognormal(0, 0.6, n_norm)
    channel = _choice(rng.random(n_norm), np.array([.35, .3, .1, .25]))
    card = rng.integers(0, attrs["n_cards"])
    # friendly fraud: a few ordinary transactions are charged back anyway (label noise)
    norm_cb = rng.random(n_norm) < 0.001

    # fraud bursts: elderly customers and the east region are targeted a little more often
    n_b = len(burst_len)
    cand = rng.integers(0, cfg.n_customers, n_b * 4).reshape(n_b, 4)
    ca = customer_attrs(cand.ravel(), cfg.seed)
    weight = (1 + 1.0 * (ca["age"] == 4) + 0.5 * (ca["region"] == 2)).reshape(n_b, 4)
    pick = (weight * rng.random((n_b, 4))).argmax(axis=1)
    b_cust = cand[np.arange(n_b), pick]
    f_cust = np.repeat(b_cust, burst_len)
    f_attrs = customer_attrs(f_cust, cfg.seed)
    b_start = _day_seconds(rng, n_b, 0.45)
    gaps = rng.integers(30, 1200, n_fraud)  # seconds between a burst's transactions
    first = np.repeat(np.cumsum(burst_len) - burst_len, burst_len)
    offsets = np.cumsum(gaps) - np.cumsum(gaps)[first] if n_fraud else np.zeros(0, np.int64)
    f_secs = np.minimum(np.repeat(b_start, burst_len) + offsets, 86399)
    risky_m = rng.integers(0, cfg.n_merchants, n_fraud)
    m_cat = merchant_attrs(risky_m, cfg.seed)["category"]
    # re-draw merchants until most fall in risky categories (cheap: 3 tries)
    for _ in range(3):
        redo = ~np.isin(m_cat, RISKY) & (rng.random(n_fraud) < 0.8)
        risky_m[redo] = rng.integers(0, cfg.n_merchants, redo.sum())
        m_cat = merchant_attrs(risky_m, cfg.seed)["category"]
    f_amount = f_attrs["mean_amount"] * rng.uniform(2, 8, n_fraud)
    f_channel = np.where(rng.random(n_fraud) < 0.7, 3, _choice(rng.random(n_fraud), np.array([.5, .3, .2, 0])))
    # ~10% of frauds look entirely ordinary: the part no model can learn (all of them after a fraud change)
    plain = rng.random(n_fraud) < 0.10
    if changed:
        plain = np.ones(n_fraud, bool)
        f_channel = _choice(rng.random(n_fraud), np.array([.35, .3, .1, .25]))
    f_fav = favourite_merchants(f_cust, rng.integers(0, 5, n_fraud), cfg.seed, cfg.n_merchants)
    risky_m = np.where(plain, f_fav, risky_m)
    f_amount = np.where(plain, f_attrs["mean_amount"] * rng.lognormal(0, 0.6, n_fraud), f_amount)
    f_secs = np.where(plain, _day_seconds(rng, n_fraud, 0.04), f_secs)

    is_fraud = np.concatenate([norm_cb, np.ones(n_fraud, bool)])
    all_cust = np.concatenate([cust, f_cust])
    all_card = np.concatenate([card, rng.integers(0, f_attrs["n_cards"])])
    all_merch = np.concatenate([merchant, risky_m])
    all_secs = np.concatenate([secs, f_secs])
    all_amount = np.round(np.concatenate([amount, f_amount]) * (cfg.amount_shift if drifted else 1.0), 2)
    all_channel = np.concatenate([channel, f_channel])
    order = rng.permutation(n_rows)
    all_cust, all_card, all_merch, all_secs, all_amount, all_channel, is_fraud = (
        a[order] for a in (all_cust, all_card, all_merch, all_secs, all_amount, all_channel, is_fraud))

    seq = first_seq + np.arange(n_rows)
    day_tag = day.strftime("%Y%m%d")
    txn_id = np.char.add(f"t{day_tag}-", np.char.zfill(seq.astype(str), 9))
    base = np.datetime64(day.isoformat(), "s")
    ts = base + all_secs.astype("timedelta64[s]")
    country = merchant_attrs(all_merch, cfg.seed)["country"]
    device = np.where(all_channel == 3, np.where(rng.random(n_rows) < 0.6, "mobile", "desktop"), "terminal")
    tx = pd.DataFrame({
        "txn_id": txn_id,
        "event_ts": pd.to_datetime(ts).strftime(TS_FMT),
        "card_id": np.char.add(np.char.add("c", all_cust.astype(str)), np.char.add("-", all_card.astype(str))),
        "customer_id": np.char.add("c", all_cust.astype(str)),
        "merchant_id": np.char.add("m", all_merch.astype(str)),
        "amount": all_amount,
        "currency": [CURRENCY.get(COUNTRIES[c], "EUR") for c in country],
        "channel": CHANNELS[all_channel],
        "device": device,
    })
    # chargebacks: 1-45 days later, most within two weeks
    delay = 1 + np.minimum(44, rng.exponential(6.0, n_rows).astype(int))
    cb_ts = ts + (delay * 86400 + rng.integers(0, 86400, n_rows)).astype("timedelta64[s]")
    cb = pd.DataFrame({"txn_id": txn_id[is_fraud], "reported_at": pd.to_datetime(cb_ts[is_fraud]).strftime(TS_FMT),
                       "reason_code": np.where(rng.random(int(is_fraud.sum())) < 0.8, "fraud", "not_recognised")})
    return _inject_faults(cfg, rng, tx), cb


def _inject_faults(cfg: SynthConfig, rng: np.random.Generator, tx: pd.DataFrame) -> pd.DataFrame:
    n = len(tx)
    tx = tx.astype({"amount": object})
    miss = rng.random(n) < cfg.missing_merchant_rate
    tx.loc[miss, "merchant_id"] = ""
    neg = rng.random(n) < cfg.negative_amount_rate
    tx.loc[neg, "amount"] = -tx.loc[neg, "amount"]
    bad = rng.random(n) < cfg.malformed_ts_rate
    tx.loc[bad, "event_ts"] = tx.loc[bad, "event_ts"].str.replace(r"^(\d{4})-(\d\d)-(\d\d) ", r"\3/\2/\1T", regex=True)
    dup = np.flatnonzero(rng.random(n) < cfg.duplicate_rate)
    if len(dup):
        extra = tx.iloc[dup].copy()
        changed = rng.random(len(dup)) < 0.5  # half are exact resends, half corrected payloads
        ts = pd.to_datetime(extra["event_ts"], format=TS_FMT, errors="coerce")
        ok = changed & ts.notna().to_numpy()
        extra.loc[ok, "event_ts"] = (ts[ok] + pd.Timedelta(seconds=1)).dt.strftime(TS_FMT)
        extra.loc[ok, "amount"] = [round(abs(float(a)) * 1.01, 2) for a in extra.loc[ok, "amount"]]
        tx = pd.concat([tx, extra], ignore_index=True)
    return tx


# ---------------------------------------------------------------- files
def _write_dimensions(cfg: SynthConfig, out: Path) -> None:
    idx = np.arange(cfg.n_customers)
    a = customer_attrs(idx, cfg.seed)
    pd.DataFrame({"customer_id": np.char.add("c", idx.astype(str)), "age_band": AGE_BANDS[a["age"]],
                  "gender": GENDERS[a["gender"]], "region": REGIONS[a["region"]]}
                 ).to_csv(out / "customers.csv", index=False)
    m = np.arange(cfg.n_merchants)
    b = merchant_attrs(m, cfg.seed)
    pd.DataFrame({"merchant_id": np.char.add("m", m.astype(str)), "merchant_category": CATEGORIES[b["category"]],
                  "merchant_country": COUNTRIES[b["country"]]}).to_csv(out / "merchants.csv", index=False)


def recategorize_merchants(out: Path, share: float, category: str = "crypto_exchange", seed: int = 0) -> int:
    """A new merchant category: the merchants snapshot (``merchants.csv``) moves ``share`` of its merchants
    into ``category``, as an upstream re-classification would; days processed after it see the new value.
    Returns how many merchants moved."""
    path = out / "merchants.csv"
    m = pd.read_csv(path)
    moved = _unif(np.arange(len(m)), seed * 101 + 99) < share
    m.loc[moved, "merchant_category"] = category
    _atomic_csv(m, path)
    return int(moved.sum())


def generate(cfg: SynthConfig, out: Path) -> dict[str, int]:
    """Write the whole landing zone; returns counts. Atomic per file (temp name, then rename)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_dimensions(cfg, out)
    counts = {"transactions": 0, "chargebacks": 0}
    for d in range(cfg.days):
        day = cfg.start + dt.timedelta(days=d)
        tx_dir = out / "transactions" / f"ds={day.isoformat()}"
        tx_dir.mkdir(parents=True, exist_ok=True)
        cbs = []
        seq, chunk = 0, 0
        while seq < cfg.rows_per_day:
            n = min(cfg.chunk_rows, cfg.rows_per_day - seq)
            tx, cb = generate_chunk(cfg, d, chunk, n, seq)
            tx, late = split_late(cfg, tx, d, chunk)
            _atomic_csv(tx, tx_dir / f"part-{chunk:05d}.csv")
            for delay, part in late.groupby("_delay", sort=True):  # landed with a later day's delivery
                later = out / "transactions" / f"ds={(day + dt.timedelta(days=int(delay))).isoformat()}"
                later.mkdir(parents=True, exist_ok=True)
                _atomic_csv(part.drop(columns="_delay"), later / f"part-late-{day.strftime('%Y%m%d')}-{chunk:05d}.csv")
            counts["transactions"] += len(tx) + len(late)
            cbs.append(cb)
            seq, chunk = seq + n, chunk + 1
        cb = pd.concat(cbs, ignore_index=True)
        counts["chargebacks"] += len(cb)
        for rep_day, part in cb.groupby(cb["reported_at"].str.slice(0, 10), sort=True):
            cb_dir = out / "chargebacks" / f"ds={rep_day}"
            cb_dir.mkdir(parents=True, exist_ok=True)
            _atomic_csv(part, cb_dir / f"part-e{day.strftime('%Y%m%d')}.csv")
    mark_complete(out, ("transactions", "chargebacks"), cfg.start, cfg.days)
    return counts


def split_late(cfg: SynthConfig, tx: pd.DataFrame, day_index: int, chunk_index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(on time, late): ``late_rate`` of the rows, with ``_delay`` (1-3 days) until the day they land."""
    if not cfg.late_rate:
        return tx, tx.iloc[:0].assign(_delay=0)
    rng = np.random.default_rng([cfg.seed, day_index, chunk_index, 7])
    late = rng.random(len(tx)) < cfg.late_rate
    delay = rng.integers(1, 4, len(tx))
    return tx[~late], tx[late].assign(_delay=delay[late])


def mark_complete(out: Path, sources: tuple[str, ...], start: dt.date, days: int) -> None:
    """The delivery's last act: the completeness marker of every source for each day written (see
    ``jobs.common.landing.MARKER``); a day without chargebacks gets an empty folder with its marker.
    Chargebacks reported after the last day sit in folders that stay unmarked: those days have not landed."""
    for d in range(days):
        for source in sources:
            folder = out / source / f"ds={(start + dt.timedelta(days=d)).isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "_SUCCESS").touch()


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> tuple[SynthConfig, Path]:
    p = argparse.ArgumentParser(prog="python -m jobs.synth", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="landing folder of the dataset, e.g. data/landing/cards")
    p.add_argument("--start", required=True, type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--rows-per-day", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--customers", type=int, default=0, help="0: rows-per-day/2")
    p.add_argument("--fraud-rate", type=float, default=0.015)
    p.add_argument("--late-rate", type=float, default=0.0, help="share of transactions landing 1-3 days late")
    for fault, default in (("missing-merchant", .002), ("negative-amount", .001), ("duplicate", .002),
                           ("malformed-ts", .001)):
        p.add_argument(f"--{fault}-rate", type=float, default=default, help="injected data fault rate")
    p.add_argument("--drift-from", type=int, default=None, help="day index from which the drift below is injected")
    p.add_argument("--amount-shift", type=float, default=1.0, help="drift: amounts multiplied by this")
    p.add_argument("--fraud-change", action="store_true", help="drift: fraud stops looking like fraud")
    a = p.parse_args(argv)
    cfg = SynthConfig(start=a.start, days=a.days, rows_per_day=a.rows_per_day, seed=a.seed, customers=a.customers,
                      fraud_rate=a.fraud_rate, missing_merchant_rate=a.missing_merchant_rate,
                      negative_amount_rate=a.negative_amount_rate, duplicate_rate=a.duplicate_rate,
                      malformed_ts_rate=a.malformed_ts_rate, late_rate=a.late_rate, drift_from=a.drift_from,
                      amount_shift=a.amount_shift, fraud_change=a.fraud_change)
    return cfg, a.out


def main(argv: list[str] | None = None) -> None:
    cfg, out = parse_args(argv)
    counts = generate(cfg, out)
    print(f"synth: wrote {counts['transactions']} transactions and {counts['chargebacks']} chargebacks "
          f"for {cfg.days} days from {cfg.start} into {out}")


if __name__ == "__main__":
    main()
