"""The audit log: every order-entry decision on record, committed before the answer leaves.

The embedded default is a SQLite file in WAL mode beside the feature store; any SQLAlchemy URL
(PostgreSQL, ...) can replace it. A decision is written and committed in the request that makes
it, so a process killed after answering has already recorded what it answered; WAL with
``synchronous=NORMAL`` keeps a commit through a process crash (not through power loss: use
``FULL`` or a server database for that). The write-ahead log is moved into the database file by
a thread of the log's own, not by whichever decision crossed SQLite's threshold (a 3-5 ms
stall every ~400 decisions; the log still starts over after a decision's own checkpoint, once
every ~4,000). Customer financials are not stored: the reasons are, as the
sentences the customer's sales rep saw.
"""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import sqlalchemy as sa

_TABLE = "decisions"
#: SQLite: how often a thread of the log's own moves the write-ahead log into the database; a
#: decision that did it itself stalled 3-5 ms, once every ~400 decisions
CHECKPOINT_EVERY_S = 0.5
#: the pages the write-ahead log may reach before a deciding writer checkpoints it itself: a
#: checkpoint that does not block writers leaves the frames written while it ran, so the log
#: starts over only after a writer's own; at this size (~40 MB) once every ~4,000 decisions
WAL_LIMIT_PAGES = 10_000


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


class AuditLog:
    """Appends decisions to the table ``decisions`` at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        # SQLite: each deciding thread keeps its own connection open (opening one per decision
        # cost more than the write: 0.33 against 0.20 ms when the machine's caches are cold),
        # so no pool, whose size would cap the threads; a server database keeps its pool
        self.engine = sa.create_engine(url, **({"connect_args": {"timeout": 30}, "poolclass": sa.pool.NullPool}
                                               if sqlite else {}))
        self._held = threading.local() if sqlite else None
        self._checkpoints: threading.Event | None = None  # set: the checkpoint thread stops
        self._checkpoints_lock = threading.Lock()
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        meta = sa.MetaData()
        self.table = sa.Table(
            _TABLE, meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.String(64), nullable=False, index=True),
            sa.Column("decided_at", sa.String(32), nullable=False),
            sa.Column("customer_id", sa.String(64), nullable=False),
            sa.Column("order_amount", sa.Float, nullable=False),
            sa.Column("requested_terms_days", sa.Integer),
            sa.Column("model_name", sa.String(128)),
            sa.Column("model_version", sa.String(32)),
            sa.Column("model_kind", sa.String(16)),
            sa.Column("pd_12m", sa.Float),
            sa.Column("score", sa.Float),
            sa.Column("grade", sa.String(16)),
            sa.Column("band", sa.String(1)),
            sa.Column("decision", sa.String(32), nullable=False),
            sa.Column("decision_reason", sa.Text),
            sa.Column("conditions", sa.Text),
            sa.Column("credit_limit", sa.Float),
            sa.Column("recommended_terms_days", sa.Integer),
            sa.Column("reasons", sa.Text),
            sa.Column("fallback", sa.Boolean, nullable=False),
            sa.Column("fallback_reason", sa.Text),
        )
        meta.create_all(self.engine)
        # compiled once for the database's own parameter style and sent straight to its driver:
        # a statement built per request cost three times the write itself
        self._columns = [c.name for c in self.table.columns if c.name != "id"]
        compiled = self.table.insert().compile(dialect=self.engine.dialect, column_keys=self._columns)
        self._sql = str(compiled)
        self._order = list(compiled.positiontup) if compiled.positional else None

    def record(self, orders: Sequence[Any], decisions: Sequence[dict[str, Any]]) -> None:
        """Write one row per decision in one transaction; raises if it cannot be committed."""
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        rows = [{
            "request_id": d["request_id"], "decided_at": at, "customer_id": d["customer_id"],
            "order_amount": float(o.order_amount), "requested_terms_days": o.requested_terms_days,
            "model_name": d["model"]["name"], "model_version": d["model"]["version"], "model_kind": d["model"]["kind"],
            "pd_12m": d["pd_12m"], "score": d["score"], "grade": d["grade"], "band": d["band"],
            "decision": d["decision"], "decision_reason": d["decision_reason"],
            "conditions": json.dumps(d["conditions"]), "credit_limit": d["credit_limit"],
            "recommended_terms_days": d["recommended_terms_days"],
            "reasons": json.dumps([{"feature": r["feature"], "text": r["text"]} for r in d["reasons"]]),
            "fallback": d["fallback"], "fallback_reason": d["fallback_reason"],
        } for o, d in zip(orders, decisions)]
        params = [tuple(r[k] for k in self._order) for r in rows] if self._order else rows
        held = self._held
        if held is not None and self._checkpoints is None:
            self._start_checkpoints()
        conn = getattr(held, "conn", None) if held is not None else None
        if conn is None:
            conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.executemany(self._sql, params)
            cur.close()
            conn.commit()
        except BaseException:
            if held is not None:
                held.conn = None  # the next decision opens a fresh one
            with contextlib.suppress(Exception):  # the write's own error is the one to report
                conn.rollback()
                conn.close()
            raise
        if held is not None:
            held.conn = conn
        else:
            conn.close()

    def _start_checkpoints(self) -> None:
        with self._checkpoints_lock:
            if self._checkpoints is None:
                self._checkpoints = threading.Event()
                threading.Thread(target=_checkpoint_loop, args=(self.engine, self._checkpoints),
                                 name="riskcast-audit-checkpoint", daemon=True).start()

    def read(self) -> pd.DataFrame:
        """The whole log, oldest first (for review and tests; export large logs with SQL)."""
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(self.table).order_by(self.table.c.id), conn)

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.set()
        conn = getattr(self._held, "conn", None) if self._held is not None else None
        if conn is not None:
            self._held.conn = None
            conn.close()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_LIMIT_PAGES}")
    cur.close()


def _checkpoint_loop(engine: sa.engine.Engine, stop: threading.Event) -> None:
    """Move the write-ahead log into the database every ``CHECKPOINT_EVERY_S`` without
    blocking writers (PASSIVE), off the deciding threads (SQLite lets go of the interpreter
    lock while it works). A failed round is retried at the next."""
    conn = None
    while not stop.wait(CHECKPOINT_EVERY_S):
        try:
            if conn is None:
                conn = engine.raw_connection()
            cur = conn.cursor()
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cur.close()
        except Exception:  # noqa: BLE001 - the file went or is busy: writers stay bounded by WAL_LIMIT_PAGES
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = None
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
