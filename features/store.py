"""The latest-features store: each customer's newest feature row, for order-entry lookups.

The embedded default is one SQLite file, written aside and renamed into place so a reader
never sees half a store.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from dataclasses import dataclass
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
    """Read-only lookups of the latest features by customer id.

    Each thread keeps its own connection (opening one costs more than the lookup) and
    reopens it when the file was replaced: a rescore renames a new store into place, and
    the next lookup reads it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"feature store {self.path} does not exist; run `riskcast demo` or `riskcast train` first", field="store")
        self._local = threading.local()
        self._reader()

    def _reader(self) -> "_Reader":
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise InputError(f"feature store {self.path} has gone", field="store") from None
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        held: _Reader | None = getattr(self._local, "reader", None)
        if held is not None and held.version == version:
            return held
        if held is not None:
            held.con.close()
        held = _Reader.open(self.path, version)
        self._local.reader = held
        return held

    @property
    def columns_(self) -> list[str]:
        return self._reader().columns

    @property
    def registry_version_(self) -> str | None:
        return self._reader().registry_version

    def get(self, customer_id: str) -> dict[str, object] | None:
        r = self._reader()
        row = r.con.execute(f"SELECT * FROM {TABLE} WHERE customer_id = ?", (customer_id,)).fetchone()
        if row is None:
            return None
        return {k: (math.nan if v is None else v) for k, v in zip(r.columns, row)}

    def __len__(self) -> int:
        return int(self._reader().con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])


@dataclass(frozen=True)
class _Reader:
    """One thread's open store file, with the columns and registry version of that file."""

    version: tuple[int, int, int]
    con: sqlite3.Connection
    columns: list[str]
    registry_version: str | None

    @classmethod
    def open(cls, path: Path, version: tuple[int, int, int]) -> "_Reader":
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        try:
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({TABLE})")]
            row = con.execute(f"SELECT registry_version FROM {TABLE} LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            con.close()
            raise InputError(f"feature store {path} cannot be read: {exc}", field="store") from None
        return cls(version, con, columns, row[0] if row else None)
