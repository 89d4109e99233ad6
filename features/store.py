"""The latest-features store: each customer's newest feature row, for order-entry lookups.

The embedded default is one SQLite file, written aside and renamed into place so a reader
never sees half a store. A row holds the customer's text columns (as-of date, industry) and
its numbers packed as one little-endian float64 vector: binding a million rows of fifty
values one by one takes tens of seconds, a million vectors a second or two, and a lookup
unpacks its vector faster than SQLite returns fifty columns.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskcast.data.io import atomic_path
from riskcast.errors import InputError, StoreUnavailableError

TABLE = "latest_features"
META = "store_meta"


def _quoted(names) -> str:
    return ", ".join(f'"{c}"' for c in names)


#: why a read of the store found none to read (said without the file's path)
MISSING = "order-entry store: missing; a rescore writes it"
UNREADABLE = "order-entry store: cannot be read (not a store or damaged); a rescore rebuilds it"
LAYOUT = "order-entry store: built for another layout (its column lists cannot be read); a rescore rebuilds it"


#: what ``write_store`` itself records in the meta table; ``meta`` may not set these
RESERVED_META = ("numbers", "texts", "registry_version", "as_of")


def write_store(features: pd.DataFrame, path: str | Path, registry_version: str,
                meta: dict[str, str] | None = None) -> Path:
    """Keep the newest row per customer and write them to a fresh SQLite file atomically.

    Each row carries its as-of date; the file, the version of the registry it was built with
    and its own as-of date (the newest row's), so that a reader can tell a store built for
    another model and a rescore can tell an older store from a newer one. ``meta``: further
    text entries kept beside them (read back as ``FeatureStore.meta_``).
    """
    extra = dict(meta or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not key or key in RESERVED_META:
            raise InputError(f"meta.{key}: not a key a caller may set (reserved: {', '.join(RESERVED_META)})",
                             field=f"meta.{key}")
        if not isinstance(value, str):
            raise InputError(f"meta.{key}: must be text, got {type(value).__name__}", field=f"meta.{key}")
    latest = features
    if latest["as_of"].nunique() > 1:
        latest = latest.sort_values("as_of", kind="stable")
    older = latest["customer_id"].duplicated(keep="last").to_numpy()
    if older.any():  # (a copy of the book only when there is something to drop)
        latest = latest[~older]
    if not latest["customer_id"].is_monotonic_increasing:  # the key's order makes a tight index
        latest = latest.sort_values("customer_id", kind="stable")
    numbers = [c for c in latest.columns
               if c not in ("customer_id", "as_of") and pd.api.types.is_numeric_dtype(latest[c])]
    texts = [c for c in latest.columns if c not in numbers and c != "customer_id"]
    cols = {"customer_id": latest["customer_id"].astype(str).tolist()}
    for c in texts:
        codes, distinct = pd.factorize(latest[c])  # a book has one as-of date and a few industries
        if pd.api.types.is_datetime64_any_dtype(distinct):
            distinct = distinct.strftime("%Y-%m-%d")
        words = np.array([*map(str, distinct), None], dtype=object)
        cols[c] = words[codes].tolist()  # code -1 (missing) takes the last: None
    packed = np.empty((len(latest), len(numbers)), dtype="<f8")
    for j, c in enumerate(numbers):  # column by column into one row-major block
        packed[:, j] = latest[c].to_numpy(dtype="<f8", na_value=np.nan)
    width = packed.shape[1] * 8
    raw = packed.tobytes()
    cols["numbers"] = [raw[i:i + width] for i in range(0, len(raw), width)] if width else [b""] * len(latest)
    names = _quoted(cols)
    as_of = _newest(latest["as_of"]) if "as_of" in latest.columns else None
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            with con:
                con.execute("PRAGMA journal_mode = OFF")
                con.execute(f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT)")
                con.executemany(f"INSERT INTO {META} VALUES (?, ?)",
                                [("numbers", json.dumps(numbers)), ("texts", json.dumps(texts)),
                                 ("registry_version", registry_version),
                                 *([("as_of", as_of)] if as_of is not None else []), *extra.items()])
                con.execute(f"CREATE TABLE {TABLE} (customer_id TEXT NOT NULL, "
                            + ", ".join(f'"{c}" TEXT' for c in texts) + (", " if texts else "") + "numbers BLOB)")
                con.executemany(f"INSERT INTO {TABLE} ({names}) VALUES ({', '.join('?' * len(cols))})",
                                zip(*cols.values()))
                con.execute(f"CREATE UNIQUE INDEX ix_{TABLE}_customer ON {TABLE}(customer_id)")
        finally:
            con.close()
    return Path(path)


def _newest(dates: pd.Series) -> str | None:
    """The latest date of a column of dates (or of date texts) as YYYY-MM-DD; None when empty."""
    newest = pd.to_datetime(pd.Series(dates.unique()), errors="coerce").max()  # a book has a few dates
    return None if pd.isna(newest) else newest.strftime("%Y-%m-%d")


def store_as_of(path: str | Path) -> str | None:
    """The as-of date of the store file at ``path`` (YYYY-MM-DD), None when it cannot be told.

    A store written before stores recorded their date is read for its newest row instead (one
    scan, for a command; serving reads only the meta). Raises ``InputError`` for a file that is
    no store."""
    try:
        reader = _Reader.open(Path(path), (0, 0, 0))
    except StoreUnavailableError as exc:
        raise InputError(str(exc), field="store") from None
    try:
        if reader.as_of is not None:
            return reader.as_of
        if "as_of" not in reader.texts:
            return None
        row = reader.con.execute(f'SELECT MAX("as_of") FROM {TABLE}').fetchone()
        return _newest(pd.Series([row[0]])) if row and row[0] is not None else None
    except sqlite3.Error:
        raise InputError(UNREADABLE, field="store") from None
    finally:
        reader.con.close()


class FeatureStore:
    """Read-only lookups of the latest features by customer id.

    Each thread keeps its own connection (opening one costs more than the lookup) and
    reopens it when the file changed (inode, modification time or size): a rescore renames a
    new store into place, a store put back or rewritten in place is read on the next lookup.

    Every read of a store that is missing or cannot be read raises ``StoreUnavailableError``
    (our fault, not the caller's). ``must_exist`` (commands): the constructor refuses such a
    file with an ``InputError``; without it (the service) the store is built whatever the
    file's state, so that the service starts and answers once the file is back.
    """

    def __init__(self, path: str | Path, *, must_exist: bool = True) -> None:
        self.path = Path(path)
        self._local = threading.local()
        if must_exist:
            if not self.path.exists():
                raise InputError("order-entry store: does not exist; run `riskcast demo` or `riskcast rescore` first",
                                 field="store")
            try:
                self._reader()
            except StoreUnavailableError as exc:
                raise InputError(str(exc), field="store") from None

    def _reader(self) -> "_Reader":
        """This thread's reader of the file as it is now: one ``os.stat`` when nothing changed.
        A file that failed to open is not tried again until it changes."""
        local = self._local
        held: _Reader | None = getattr(local, "reader", None)
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if held is not None:  # the file went: its old content is no store to answer from
                local.reader = None
                held.con.close()
            raise StoreUnavailableError(MISSING if isinstance(exc, FileNotFoundError) else UNREADABLE,
                                        field="store") from None
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        if held is not None:
            if held.version == version:
                return held
            local.reader = None
            held.con.close()
        failed = getattr(local, "failed", None)
        if failed is not None and failed[0] == version:
            raise StoreUnavailableError(failed[1], field="store")
        try:
            held = _Reader.open(self.path, version)
        except StoreUnavailableError as exc:
            local.failed = (version, str(exc))
            raise
        local.failed = None
        local.reader = held
        return held

    @property
    def columns_(self) -> list[str]:
        return self._reader().columns

    @property
    def registry_version_(self) -> str | None:
        return self._reader().registry_version

    @property
    def as_of_(self) -> str | None:
        """The store's as-of date (YYYY-MM-DD); None for a store written before stores recorded it."""
        return self._reader().as_of

    @property
    def meta_(self) -> dict[str, str]:
        """The store file's meta entries (a copy): registry version, as-of date, the writer's own."""
        return dict(self._reader().meta)

    def get(self, customer_id: str) -> dict[str, object] | None:
        """The customer's row; None when the store does not hold it. A damaged file (a page
        that cannot be read, a row that does not decode) raises ``StoreUnavailableError``."""
        r = self._reader()
        try:
            row = r.con.execute(r.select, (customer_id,)).fetchone()
            if row is None:
                return None
            if r.legacy:  # a column per value, missing as NULL
                return {k: (math.nan if v is None else v) for k, v in zip(r.texts, row)}
            values = np.frombuffer(row[-1], dtype="<f8").tolist()
        except (sqlite3.Error, ValueError, TypeError):
            raise StoreUnavailableError(UNREADABLE, field="store") from None
        if len(values) != len(r.numbers):
            raise StoreUnavailableError(UNREADABLE, field="store")
        out: dict[str, object] = {"customer_id": customer_id}
        out.update(zip(r.texts, row[:-1]))
        out.update(zip(r.numbers, values))
        out["registry_version"] = r.registry_version
        return out

    def __len__(self) -> int:
        con = self._reader().con
        try:
            return int(con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])
        except sqlite3.Error:
            raise StoreUnavailableError(UNREADABLE, field="store") from None


def _whole(path: Path) -> bool:
    """Whether the file is as long as its own header says: SQLite reads the pages a truncated
    file still has without a word, so a store cut short would answer for some customers and
    not others. A file that is no SQLite database is left to the open to refuse."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return True  # gone meanwhile: the open says so
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        return True
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    if header[92:96] != header[24:28] or pages == 0:  # the header's page count is not kept valid
        return True
    return page * pages == size


@dataclass(frozen=True)
class _Reader:
    """One thread's open store file, with the columns and registry version of that file."""

    version: tuple[int, int, int]
    con: sqlite3.Connection
    texts: list[str]
    numbers: list[str]
    registry_version: str | None
    select: str
    #: a store written before the numbers were packed: read until the next rescore rewrites it
    legacy: bool = False
    #: the newest row's date, from the meta; None for a store written before it was recorded
    as_of: str | None = None
    #: the file's meta table as written (the oldest layout has none: its rows' registry version)
    meta: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        if self.legacy:
            return self.texts
        return ["customer_id", *self.texts, *self.numbers, "registry_version"]

    @classmethod
    def open(cls, path: Path, version: tuple[int, int, int]) -> "_Reader":
        """Raises ``StoreUnavailableError``: the file is missing, is no store or is damaged,
        or its meta does not say its columns."""
        if not _whole(path):
            raise StoreUnavailableError(UNREADABLE, field="store")
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error:
            raise StoreUnavailableError(UNREADABLE if path.exists() else MISSING, field="store") from None
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if META not in tables and TABLE in tables:
                columns = [r[1] for r in con.execute(f"PRAGMA table_info({TABLE})")]
                row = con.execute(f"SELECT registry_version FROM {TABLE} LIMIT 1").fetchone()
                return cls(version, con, columns, [], row[0] if row else None,
                           f"SELECT * FROM {TABLE} WHERE customer_id = ?", legacy=True,
                           meta={"registry_version": row[0]} if row and row[0] is not None else {})
            meta = dict(con.execute(f"SELECT key, value FROM {META}").fetchall())
        except sqlite3.Error:
            con.close()
            raise StoreUnavailableError(UNREADABLE if path.exists() else MISSING, field="store") from None
        try:
            texts, numbers = json.loads(meta["texts"]), json.loads(meta["numbers"])
            if not all(isinstance(v, list) and all(isinstance(c, str) for c in v) for v in (texts, numbers)):
                raise ValueError("column lists")
        except (KeyError, ValueError, TypeError):
            con.close()
            raise StoreUnavailableError(LAYOUT, field="store") from None
        select = f"SELECT {_quoted([*texts, 'numbers'])} FROM {TABLE} WHERE customer_id = ?"
        return cls(version, con, texts, numbers, meta.get("registry_version"), select,
                   as_of=meta.get("as_of"), meta=meta)
