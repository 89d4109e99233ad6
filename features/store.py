"""The latest-features store: each customer's newest feature row, for order-entry lookups.

The embedded default is one SQLite file, written aside and renamed into place so a reader
never sees half a store.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pandas as pd

from riskcast.data.io import atomic_path
from riskcast.errors import InputError

TABLE = "latest_features"


def write_store(features: pd.DataFrame, path: str | Path, registry_version: str) -> Path:
    """Keep the newest row per customer and write them to a fresh SQLite file atomically.

    Each row carries its as-of date and the version of the registry it was built with.
    """
    latest = features.sort_values("as_of").drop_duplicates("customer_id", keep="last").copy()
    latest["as_of"] = latest["as_of"].dt.strftime("%Y-%m-%d")
    latest["registry_version"] = registry_version
    with atomic_path(path) as tmp:
        with sqlite3.connect(tmp) as con:
            latest.to_sql(TABLE, con, index=False)
            con.execute(f"CREATE UNIQUE INDEX ix_{TABLE}_customer ON {TABLE}(customer_id)")
        con.close()
    return Path(path)


class FeatureStore:
    """Read-only lookups of the latest features by customer id (thread-safe: one connection per call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"feature store {self.path} does not exist; run `riskcast demo` or `riskcast train` first", field="store")
        con = self._connect()
        try:
            self.columns_ = [r[1] for r in con.execute(f"PRAGMA table_info({TABLE})")]
            row = con.execute(f"SELECT registry_version FROM {TABLE} LIMIT 1").fetchone()
        finally:
            con.close()
        self.registry_version_ = row[0] if row else None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def get(self, customer_id: str) -> dict[str, object] | None:
        con = self._connect()
        try:
            row = con.execute(f"SELECT * FROM {TABLE} WHERE customer_id = ?", (customer_id,)).fetchone()
        finally:
            con.close()
        if row is None:
            return None
        return {k: (math.nan if v is None else v) for k, v in zip(self.columns_, row)}

    def __len__(self) -> int:
        con = self._connect()
        try:
            return int(con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])
        finally:
            con.close()
