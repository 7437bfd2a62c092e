"""The generator: deterministic, faults at their rates, labels 1-45 days late, learnable structure."""
from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd

from jobs import synth


def _cfg(**kw):
    base = dict(start=dt.date(2026, 10, 1), days=2, rows_per_day=4000, seed=5, chunk_rows=1500)
    return synth.SynthConfig(**{**base, **kw})


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.csv"))}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    synth.generate(_cfg(), tmp_path / "a")
    synth.generate(_cfg(), tmp_path / "b")
    synth.generate(_cfg(seed=6), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_chunks_stream_to_several_files(tmp_path):
    synth.generate(_cfg(days=1), tmp_path)
    assert len(list((tmp_path / "transactions" / "ds=2026-10-01").glob("part-*.csv"))) == 3


def test_faults_labels_and_structure(tmp_path):
    cfg = _cfg(days=1, rows_per_day=60_000, chunk_rows=60_000, missing_merchant_rate=0.01, negative_amount_rate=0.01,
               duplicate_rate=0.01, malformed_ts_rate=0.01)
    synth.generate(cfg, tmp_path)
    tx = pd.read_csv(tmp_path / "transactions" / "ds=2026-10-01" / "part-00000.csv", keep_default_na=False)
    n = 60_000
    assert 0.007 < (tx["merchant_id"] == "").sum() / n < 0.013
    assert 0.007 < (tx["amount"].astype(float) < 0).sum() / n < 0.013
    assert 0.007 < tx["txn_id"].duplicated().sum() / n < 0.013
    assert 0.007 < tx["event_ts"].str.contains("T").sum() / n < 0.013
    cb = pd.concat(pd.read_csv(p) for p in (tmp_path / "chargebacks").rglob("*.csv"))
    ts = pd.to_datetime(tx.drop_duplicates("txn_id").set_index("txn_id")["event_ts"], errors="coerce", format=synth.TS_FMT)
    delay = (pd.to_datetime(cb["reported_at"]) - ts.reindex(cb["txn_id"]).to_numpy()).dt.days.dropna()
    assert delay.min() >= 1 and delay.max() <= 45
    assert 0.01 < len(cb) / n < 0.02
    fraud = tx[tx["txn_id"].isin(cb["txn_id"])]
    legit = tx[~tx["txn_id"].isin(cb["txn_id"])]
    assert (fraud["channel"] == "online").mean() > 2 * (legit["channel"] == "online").mean()
    hour = lambda d: pd.to_datetime(d["event_ts"], errors="coerce", format=synth.TS_FMT).dt.hour  # noqa: E731
    assert (hour(fraud) < 6).mean() > 3 * (hour(legit) < 6).mean()
