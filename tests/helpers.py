"""Helpers for tests: tiny landing zones and step contexts."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from jobs.common.cli import StepContext
from jobs.common.config import DatasetSpec, Settings

TX_HEADER = ["txn_id", "event_ts", "card_id", "customer_id", "merchant_id", "amount", "currency", "channel", "device"]


def write_csv(folder: Path, header: list[str], rows: list[list[str]], name: str = "part-00000.csv",
              bom: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def write_cards_dimensions(landing: Path) -> None:
    write_csv(landing / "cards", ["customer_id", "age_band", "gender", "region"],
              [["c1", "26-35", "F", "north"], ["c2", "65+", "M", "east"]], name="customers.csv")
    write_csv(landing / "cards", ["merchant_id", "merchant_category", "merchant_country"],
              [["m1", "grocery", "GB"], ["m2", "electronics", "US"]], name="merchants.csv")


def tx_folder(landing: Path, ds: str) -> Path:
    return landing / "cards" / "transactions" / f"ds={ds}"


def context(step: str, spec: DatasetSpec, settings: Settings, ds: str, start_ds: str | None = None,
            params: dict | None = None) -> StepContext:
    d = dt.date.fromisoformat(ds)
    return StepContext(step=step, ds=d, start_ds=dt.date.fromisoformat(start_ds) if start_ds else d, dataset=spec,
                       settings=settings, params=params or {}, run_id="test-run")
