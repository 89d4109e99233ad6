"""The audit log: every order-entry decision on record, committed before the answer leaves.

The embedded default is a SQLite file in WAL mode beside the feature store; a PostgreSQL URL
can replace it (both can insert "unless the key exists", which idempotent retries rest on). A
decision is written and committed in the request that makes it, so a process killed after
answering has already recorded what it answered; WAL with ``synchronous=NORMAL`` keeps a commit
through a process crash (not through power loss: use ``FULL`` or a server database for that).
The write-ahead log is moved into the database file by a thread of the log's own, not by
whichever decision crossed SQLite's threshold (a 3-5 ms stall every ~400 decisions; the log
still starts over after a decision's own checkpoint, once every ~4,000).

A row holds what the decision used, so that ``riskcast replay`` can decide it again: every
registry feature and policy fact as decided (NaN as null), which of them the request supplied
and which book values it replaced, the order, the model, the fingerprint of the configuration
(whose full text is in ``configurations``, once per fingerprint), the store's as-of date, the
fallback the environment imposed (fallback mode, time budget) and the answer as sent.

A record waits for the database only until its deadline (the order's audit budget, or the
request's time-out), which is checked again right before the commit: a decision not committed
in time is refused and leaves nothing. The event loop's writes do not wait for another
writer's lock at all (``AuditBusy``: the service decides again in a thread). A file the
process may not write is never opened (see ``_writable_or_refused``), so a spell of a
read-only log ends with the spell.

``request_id`` is unique: a retry of the same order gets the recorded answer and writes nothing;
the same id for another order is refused. The schema is versioned (``audit_schema``) and an
older log is upgraded in place when the log is opened (see ``_migrate``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.dialects import postgresql, sqlite

from riskcast.errors import AuditUnavailableError, ConfigError, RequestConflictError

_TABLE = "decisions"
#: rows of an old log whose request_id an earlier row already had, moved aside by the upgrade
DUPLICATES = "decisions_duplicates"
#: each configuration decisions were made under, by fingerprint, written once
CONFIGS = "configurations"
#: one row: the schema version of this log
VERSION_TABLE = "audit_schema"
#: 1: the first log (no unique key, no inputs); 2: inputs, answer, unique request_id
SCHEMA_VERSION = 2
#: SQLite: how often a thread of the log's own moves the write-ahead log into the database; a
#: decision that did it itself stalled 3-5 ms, once every ~400 decisions
CHECKPOINT_EVERY_S = 0.5
#: the pages the write-ahead log may reach before a deciding writer checkpoints it itself: a
#: checkpoint that does not block writers leaves the frames written while it ran, so the log
#: starts over only after a writer's own; at this size (~40 MB) once every ~4,000 decisions
WAL_LIMIT_PAGES = 10_000
_DIALECTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
#: the longest a record waits for the database when the caller gives no deadline
DEFAULT_WAIT_S = 30.0
#: what a writer that must not wait (the event loop) waits at most for another writer's lock:
#: SQLite's busy handler sleeps 1, then 2 ms; two workers' commits take ~0.2 ms each, so a
#: collision mostly resolves within it, and a lock held longer goes to a thread
NO_WAIT_MS = 3
#: how long a readiness probe of the log may wait for the database, and how long its verdict
#: stands (a storm of probes opens one connection a second)
PROBE_WAIT_S = 0.2
PROBE_TTL_S = 1.0
_LATE = "audit log: the decision could not be put on record in time; retry"


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _tables(meta: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    decisions = sa.Table(
        _TABLE, meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
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
        # schema 2 (added at the end, so that an upgraded log has the columns of a new one)
        *_v2_columns(),
        sa.Index("ux_decisions_request_id", "request_id", unique=True),
    )
    configs = sa.Table(
        CONFIGS, meta,
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("first_recorded_at", sa.String(32), nullable=False),
    )
    return decisions, configs


def _v2_columns() -> list[sa.Column]:
    """Schema 2's columns, a fresh set per table (a column belongs to one)."""
    return [
        sa.Column("answer", sa.Text),             # the answer as sent (JSON)
        sa.Column("inputs", sa.Text),             # every feature and policy fact decided on (JSON)
        sa.Column("supplied", sa.Text),           # names the request supplied (JSON list)
        sa.Column("overridden", sa.Text),         # book values the request replaced (JSON name: value)
        sa.Column("order_features", sa.Text),     # the request's features as sent (JSON; null: none)
        sa.Column("in_book", sa.Boolean),
        sa.Column("store_as_of", sa.String(32)),
        sa.Column("store_registry_version", sa.String(64)),
        sa.Column("config_fingerprint", sa.String(64)),
        sa.Column("environment", sa.Text),        # fallback imposed from outside (JSON; null: none)
    ]


@dataclass(slots=True)
class Evidence:
    """What the decisions of one call were made from, beside the orders and the answers."""

    #: the keys of each row of ``values``: registry features, then policy facts
    names: Sequence[str]
    #: per order, the values decided on, in ``names``' order (NaN allowed)
    values: Sequence[Sequence[float]]
    #: per order, the book's values the request replaced (name: the book's value)
    overridden: Sequence[Mapping[str, float | None]]
    in_book: Sequence[bool]
    store_as_of: Sequence[str | None]
    store_registry_version: Sequence[str | None]
    #: per order, the fallback the environment imposed ({"forced_fallback": ...}, ...) or None
    environment: Sequence[Mapping[str, str] | None]
    config_fingerprint: str
    config_json: str


def order_features(features: Mapping[str, Any] | None) -> str | None:
    """The request's features as one canonical text: what a retry must repeat exactly."""
    if not features:
        return None
    return json.dumps({k: (None if v is None else float(v)) for k, v in features.items()},
                      sort_keys=True, allow_nan=False)


def _nulls(values: Sequence[float]) -> list[float | None]:
    return [None if v != v else v for v in values]  # NaN as null; floats keep their repr (exact)


class AuditBusy(AuditUnavailableError):
    """Another writer holds the log and the caller asked not to wait for it: nothing was
    written, and the same record may be tried again where waiting blocks no one else."""


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` says another writer holds the lock (SQLite busy or locked, PostgreSQL
    lock_not_available), as opposed to a log that cannot be written at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED and their extended codes
    return getattr(exc, "sqlstate", None) == "55P03"


def _late(exc: BaseException) -> bool:
    """PostgreSQL cancelled the statement at the record's time budget (statement_timeout)."""
    return getattr(exc, "sqlstate", None) == "57014"


def _readonly(exc: BaseException) -> bool:
    """SQLite refused a write: the file, its write-ahead log or their folder cannot be written."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == 8  # SQLITE_READONLY and its extended codes


class AuditLog:
    """Appends decisions to the table ``decisions`` at ``url`` (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        sqlite_db = url.startswith("sqlite")
        # SQLite: each deciding thread keeps its own connection open (opening one per decision
        # cost more than the write: 0.33 against 0.20 ms when the machine's caches are cold),
        # so no pool, whose size would cap the threads; a server database keeps its pool
        # a server database: reaching it, or a pooled connection, bounded too (each write's own
        # waits are bounded by its deadline, see ``_bound``)
        self.engine = sa.create_engine(url, **({"connect_args": {"timeout": DEFAULT_WAIT_S}, "poolclass": sa.pool.NullPool}
                                               if sqlite_db else
                                               {"pool_timeout": 2, **({} if "connect_timeout" in url else
                                                                     {"connect_args": {"connect_timeout": 2}})}))
        dialect = self.engine.dialect.name
        if dialect not in _DIALECTS:
            self.engine.dispose()
            raise ConfigError(f"serving.audit_url: {dialect} is not supported; the audit log needs SQLite or "
                              "PostgreSQL (a retry is detected by an insert that skips an existing key)",
                              field="serving.audit_url")
        self._held = threading.local() if sqlite_db else None
        self._checkpoints: threading.Event | None = None  # set: the checkpoint thread stops
        self._checkpoints_lock = threading.Lock()
        if dialect == "sqlite":
            sa.event.listen(self.engine, "do_connect", _writable_or_refused)
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.table, self.configs = _tables(sa.MetaData())
        _migrate(self.engine, self.table, self.configs)
        # compiled once for the database's own parameter style and sent straight to its driver:
        # a statement built per request cost three times the write itself
        self._columns = [c.name for c in self.table.columns if c.name != "id"]
        insert = _DIALECTS[dialect]
        self._sql, self._order = _compiled(
            insert(self.table).on_conflict_do_nothing(index_elements=["request_id"]), self.engine, self._columns)
        if self._order is not None and self._order != self._columns:  # rows are built in column order
            raise RuntimeError(f"audit log: the {dialect} insert binds its columns out of the table's order")
        self._config_sql, self._config_order = _compiled(
            insert(self.configs).on_conflict_do_nothing(index_elements=["fingerprint"]), self.engine,
            ["fingerprint", "config", "first_recorded_at"])
        self._configs_written: set[str] = set()
        #: the last readiness probe: (monotonic time it stands until, its verdict)
        self._probed: tuple[float, str | None] = (-1.0, None)
        self._probe_lock = threading.Lock()

    def record(self, orders: Sequence[Any], decisions: Sequence[dict[str, Any]],
               evidence: Evidence, *, deadline: float | None = None,
               wait: bool = True) -> list[dict[str, Any] | RequestConflictError | None]:
        """Write one row per decision in one transaction; raises if it cannot be committed.

        Per order: None when written; the recorded answer when its ``request_id`` was already
        on record for the same order (a retry: nothing is written); a ``RequestConflictError``
        (returned, not raised) when it was on record for another order.

        ``deadline`` (``time.monotonic()``; default ``DEFAULT_WAIT_S`` from now) bounds the
        wait for the database and is checked right before the commit: past it, the transaction
        is rolled back and ``AuditUnavailableError`` raised, so a decision whose answer can no
        longer reach its caller in time is never on record as given. Without ``wait`` the
        write does not wait for another writer's lock (a few ms at most): ``AuditBusy``, with
        nothing written, says to try again where waiting blocks no one."""
        if deadline is None:
            deadline = time.monotonic() + DEFAULT_WAIT_S
        elif time.monotonic() >= deadline:
            raise AuditUnavailableError(_LATE)
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        names, fp = evidence.names, evidence.config_fingerprint
        keys = [order_features(o.features) for o in orders]
        # a tuple in the table's column order (a dict per row, then a tuple, cost a tenth of the
        # write); JSON by pydantic's serializer: the standard library's shortest round-trip text
        # of a float, at a seventh of its cost for the inputs' sixty-odd values
        rows = [(
            d["request_id"], at, d["customer_id"], float(o.order_amount), o.requested_terms_days,
            d["model"]["name"], d["model"]["version"], d["model"]["kind"],
            d["pd_12m"], d["score"], d["grade"], d["band"], d["decision"], d["decision_reason"],
            to_json(d["conditions"]).decode(), d["credit_limit"], d["recommended_terms_days"],
            to_json([{"feature": r["feature"], "text": r["text"]} for r in d["reasons"]]).decode(),
            d["fallback"], d["fallback_reason"],
            to_json(d).decode(),
            to_json(dict(zip(names, _nulls(evidence.values[i])))).decode(),
            to_json(list(o.features)).decode() if o.features else "[]",
            to_json(evidence.overridden[i]).decode() if evidence.overridden[i] else None,
            keys[i], evidence.in_book[i], d.get("store_as_of", evidence.store_as_of[i]),
            evidence.store_registry_version[i], fp,
            to_json(evidence.environment[i]).decode() if evidence.environment[i] else None,
        ) for i, (o, d) in enumerate(zip(orders, decisions))]
        params = rows if self._order else [dict(zip(self._columns, r)) for r in rows]
        config = None
        if fp not in self._configs_written:
            c = {"fingerprint": fp, "config": evidence.config_json, "first_recorded_at": at}
            config = tuple(c[k] for k in self._config_order) if self._config_order else c
        written = self._write(params, config, deadline, wait)
        if config is not None:
            self._configs_written.add(fp)
        if all(written):
            return [None] * len(rows)
        return self._retries(orders, decisions, written, keys)

    def _write(self, params: list, config: Any, deadline: float, wait: bool) -> list[bool]:
        """Insert the rows, skipping a request_id already on record; per row, whether it was
        written. One statement per call on the usual path (all new); only when some were not
        does the transaction start over row by row, to tell which."""
        held = self._held
        if held is not None and self._checkpoints is None:
            self._start_checkpoints()
        conn = getattr(held, "conn", None) if held is not None else None
        if held is not None:
            held.conn = None  # kept again only after this write went through
        try:
            if conn is None:
                conn = self.engine.raw_connection()
            cur = conn.cursor()
            self._bound(conn, cur, deadline, wait)
            if config is not None:
                cur.execute(self._config_sql, config)
            if len(params) == 1:
                cur.execute(self._sql, params[0])
                written = [cur.rowcount == 1]
            else:
                cur.executemany(self._sql, params)
                written = [True] * len(params)
                if cur.rowcount != len(params):
                    conn.rollback()
                    self._bound(conn, cur, deadline, wait)
                    if config is not None:
                        cur.execute(self._config_sql, config)
                    written = []
                    for p in params:
                        cur.execute(self._sql, p)
                        written.append(cur.rowcount == 1)
            cur.close()
            if time.monotonic() >= deadline:  # rolled back below: a transaction undone is no record
                raise AuditUnavailableError(_LATE)
            conn.commit()
        except BaseException as exc:
            if conn is not None:
                sound = _busy(exc) or _late(exc) or isinstance(exc, AuditUnavailableError)
                with contextlib.suppress(Exception):  # the write's own error is the one to report
                    conn.rollback()
                if sound and held is not None:
                    held.conn = conn  # another writer's lock, or time: nothing wrong with the connection
                elif sound:
                    with contextlib.suppress(Exception):
                        conn.close()  # back to the pool
                else:
                    # a connection that failed is never reused: a server may have dropped it,
                    # and a connection's state after an error it did not explain is not trusted
                    with contextlib.suppress(Exception):
                        conn.invalidate()
            if isinstance(exc, AuditUnavailableError):
                raise
            if _busy(exc):
                if not wait:
                    raise AuditBusy("audit log: another writer holds the log; retry") from None
                raise AuditUnavailableError(_LATE) from None
            if _late(exc):
                raise AuditUnavailableError(_LATE) from None
            raise
        if held is not None:
            held.conn = conn
        else:
            conn.close()
        return written

    def _bound(self, conn: Any, cur: Any, deadline: float, wait: bool) -> None:
        """Bound this transaction's waits for the database by ``deadline``, or to a few ms
        without ``wait``. SQLite: the connection's busy timeout, set only when it changes
        (a writer that never waits sets it once); PostgreSQL: lock and statement time-outs
        local to the transaction."""
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        # waiting: what is left, rounded down to a tenth of a second so that the next write,
        # a moment later, mostly finds the same value set; never past the deadline
        lock_ms = (left_ms // 100 * 100 or left_ms) if wait else min(NO_WAIT_MS, left_ms)
        if self._held is not None:
            if conn.info.get("busy_ms") != lock_ms:
                cur.execute(f"PRAGMA busy_timeout = {lock_ms:d}")
                conn.info["busy_ms"] = lock_ms
        else:
            cur.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                        (f"{left_ms}ms", f"{lock_ms}ms"))

    def _retries(self, orders: Sequence[Any], decisions: Sequence[dict[str, Any]], written: list[bool],
                 keys: list[str | None]) -> list[dict[str, Any] | RequestConflictError | None]:
        """For each row not written: the recorded answer when it repeats the recorded order,
        else the conflict naming request_id."""
        t = self.table
        wanted = sorted({d["request_id"] for d, w in zip(decisions, written) if not w})
        with self.engine.connect() as conn:
            found = {m["request_id"]: m for m in conn.execute(
                sa.select(t.c.request_id, t.c.customer_id, t.c.order_amount, t.c.requested_terms_days,
                          t.c.order_features, t.c.answer).where(t.c.request_id.in_(wanted))).mappings()}
        out: list[dict[str, Any] | RequestConflictError | None] = []
        for o, d, w, key in zip(orders, decisions, written, keys):
            if w:
                out.append(None)
                continue
            rid = d["request_id"]
            rec = found.get(rid)
            if rec is None:  # cannot happen while rows are never deleted; said, not guessed
                out.append(RequestConflictError(f"request_id: {rid!r} is on record but could not be read back; "
                                                "retry", field="request_id"))
            elif rec["answer"] is None:
                out.append(RequestConflictError(
                    f"request_id: {rid!r} was recorded before the log kept answers (audit schema 1), so the "
                    "answer cannot be repeated; send the order with a new request_id", field="request_id"))
            elif (rec["customer_id"], float(rec["order_amount"]), rec["requested_terms_days"], rec["order_features"]) \
                    != (o.customer_id, float(o.order_amount), o.requested_terms_days, key):
                out.append(RequestConflictError(
                    f"request_id: {rid!r} is already on record for another order (customer {rec['customer_id']!r}, "
                    f"amount {rec['order_amount']!r}, terms {rec['requested_terms_days']!r}, features "
                    f"{rec['order_features'] or 'none'}); a retry must repeat its order exactly, a new order needs "
                    "a new request_id", field="request_id"))
            else:
                out.append(json.loads(rec["answer"]))
        return out

    def _start_checkpoints(self) -> None:
        with self._checkpoints_lock:
            if self._checkpoints is None:
                self._checkpoints = threading.Event()
                threading.Thread(target=_checkpoint_loop, args=(self.engine, self._checkpoints),
                                 name="riskcast-audit-checkpoint", daemon=True).start()

    def probe(self) -> str | None:
        """None when a decision could be put on record now, else why not, in a few words (for
        /readyz): a write transaction is begun on a fresh connection, waiting at most
        ``PROBE_WAIT_S`` for another writer, and rolled back. The verdict stands for
        ``PROBE_TTL_S``; probes meanwhile wait for the one running and share its verdict."""
        until, verdict = self._probed
        if time.monotonic() < until:
            return verdict
        with self._probe_lock:
            until, verdict = self._probed
            if time.monotonic() < until:
                return verdict
            verdict = self._probe()
            self._probed = (time.monotonic() + PROBE_TTL_S, verdict)
            return verdict

    def _probe(self) -> str | None:
        conn = None
        try:
            conn = self.engine.raw_connection()
            cur = conn.cursor()
            wait_ms = int(PROBE_WAIT_S * 1000)
            if self._held is not None:
                cur.execute(f"PRAGMA busy_timeout = {wait_ms:d}")
                cur.execute("BEGIN IMMEDIATE")  # the write lock, as a decision's commit takes it
            else:
                cur.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                            (f"{wait_ms}ms", f"{wait_ms}ms"))
                cur.execute(f"LOCK TABLE {_TABLE} IN ROW EXCLUSIVE MODE")  # what an insert takes
            cur.close()
            return None
        except AuditUnavailableError as exc:
            return str(exc).removeprefix("audit log: ").split(";")[0]
        except Exception as exc:  # noqa: BLE001 - the verdict is the answer; the cause in a few words
            if _busy(exc) or _late(exc):
                return "another writer holds the log"
            if _readonly(exc):
                return "the log cannot be written (read-only)"
            return f"the log cannot be written ({type(exc).__name__})"
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.rollback()
                with contextlib.suppress(Exception):
                    conn.close()

    def read(self) -> pd.DataFrame:
        """The whole log, oldest first (for review and tests; export large logs with SQL)."""
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(self.table).order_by(self.table.c.id), conn)

    def records(self, request_ids: Sequence[str] | None = None, last: int | None = None) -> list[dict[str, Any]]:
        """Rows as dicts, oldest first: those of ``request_ids``, else the ``last`` N, else all."""
        t = self.table
        q = sa.select(t)
        if request_ids is not None:
            q = q.where(t.c.request_id.in_(list(request_ids))).order_by(t.c.id)
        elif last is not None:
            q = q.order_by(t.c.id.desc()).limit(last)
        else:
            q = q.order_by(t.c.id)
        with self.engine.connect() as conn:
            rows = [dict(m) for m in conn.execute(q).mappings()]
        return sorted(rows, key=lambda r: r["id"])

    def of_customer(self, customer_id: str, last: int = 50) -> list[dict[str, Any]]:
        """A customer's last ``last`` decisions, newest first (the desk's history; the desk's
        migrations index ``customer_id`` where the log shares the desk's database)."""
        t = self.table
        q = sa.select(t.c.id, t.c.request_id, t.c.decided_at, t.c.order_amount, t.c.decision, t.c.decision_reason,
                      t.c.credit_limit, t.c.pd_12m, t.c.grade, t.c.band, t.c.reasons, t.c.model_version,
                      t.c.fallback).where(t.c.customer_id == customer_id).order_by(t.c.id.desc()).limit(last)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(q).mappings()]

    def configuration(self, fingerprint: str) -> str | None:
        """The configuration (JSON) recorded under ``fingerprint``; None when there is none."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.configs.c.config)
                                .where(self.configs.c.fingerprint == fingerprint)).scalar()

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.set()
        conn = getattr(self._held, "conn", None) if self._held is not None else None
        if conn is not None:
            self._held.conn = None
            conn.close()
        self.engine.dispose()


def _compiled(statement: Any, engine: sa.engine.Engine, columns: list[str]) -> tuple[str, list[str] | None]:
    compiled = statement.compile(dialect=engine.dialect, column_keys=columns)
    return str(compiled), (list(compiled.positiontup) if compiled.positional else None)


# -- schema versions ----------------------------------------------------------------------

def _migrate(engine: sa.engine.Engine, decisions: sa.Table, configs: sa.Table) -> None:
    """Create the log, or upgrade an older one in place, in one transaction that holds the
    database's write lock (SQLite) or an advisory lock (PostgreSQL): two workers opening the
    log at once upgrade it once.

    1 -> 2: the new columns are added (null in old rows: those decisions cannot be replayed
    or repeated), and ``request_id`` becomes unique. Rows of an old log that repeat an earlier
    row's request_id (a retry recorded twice) are moved, unchanged and with their ids, to
    ``decisions_duplicates``: the first row of each request_id stays the one on record, and
    nothing is deleted."""
    dialect = engine.dialect
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        if dialect.name == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        else:
            cur.execute("SELECT pg_advisory_xact_lock(7406913522)")
        tables = _existing_tables(cur, dialect.name)
        if _TABLE not in tables:
            version = 0
        elif VERSION_TABLE not in tables:
            version = 1
        else:
            cur.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}")
            version = int(cur.fetchone()[0] or 1)
        if version > SCHEMA_VERSION:
            raise ConfigError(f"serving.audit_url: the audit log has schema version {version}, newer than this "
                              f"version of riskcast reads ({SCHEMA_VERSION})", field="serving.audit_url")
        ddl = lambda element: str(element.compile(dialect=dialect)).strip()  # noqa: E731
        if version == 0:
            cur.execute(ddl(sa.schema.CreateTable(decisions)))
            for index in decisions.indexes:
                cur.execute(ddl(sa.schema.CreateIndex(index)))
        elif version == 1:
            have = _existing_columns(cur, dialect.name, _TABLE)
            for column in _v2_columns():
                if column.name not in have:
                    cur.execute(f"ALTER TABLE {_TABLE} ADD COLUMN {column.name} {column.type.compile(dialect=dialect)}")
            later = f"id NOT IN (SELECT MIN(id) FROM {_TABLE} GROUP BY request_id)"
            cur.execute(f"SELECT COUNT(*) FROM {_TABLE} WHERE {later}")
            if cur.fetchone()[0]:
                if DUPLICATES not in tables:
                    cur.execute(f"CREATE TABLE {DUPLICATES} AS SELECT * FROM {_TABLE} WHERE 1 = 0")
                cur.execute(f"INSERT INTO {DUPLICATES} SELECT * FROM {_TABLE} WHERE {later}")
                cur.execute(f"DELETE FROM {_TABLE} WHERE {later}")
            cur.execute("DROP INDEX IF EXISTS ix_decisions_request_id")
            for index in decisions.indexes:
                cur.execute(ddl(sa.schema.CreateIndex(index)))
        if version < SCHEMA_VERSION:
            if CONFIGS not in tables:
                cur.execute(ddl(sa.schema.CreateTable(configs)))
            if VERSION_TABLE not in tables:
                cur.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
            cur.execute(f"DELETE FROM {VERSION_TABLE}")
            cur.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({SCHEMA_VERSION})")
        cur.close()
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    finally:
        conn.close()


def _existing_tables(cur: Any, dialect: str) -> set[str]:
    if dialect == "sqlite":
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    return {r[0] for r in cur.fetchall()}


def _existing_columns(cur: Any, dialect: str, table: str) -> set[str]:
    if dialect == "sqlite":
        cur.execute(f"PRAGMA table_info({table})")
        return {r[1] for r in cur.fetchall()}
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                f"AND table_name = '{table}'")
    return {r[0] for r in cur.fetchall()}


def _writable_or_refused(_dialect: Any, _record: Any, cargs: Sequence[Any], cparams: Mapping[str, Any]) -> None:
    """Open no connection to a log the process may not write. SQLite opens a file it may not
    write read-only without a word, and every connection of a process shares one index of
    the write-ahead log, made by whichever connection came first: made read-only, it stays so
    for connections opened after the file is writable again, as long as any of them lives (with
    steady traffic, until a restart). Refused here, the order is refused until the file can be
    written, and the first connection after that writes."""
    path = str(cargs[0] if cargs else cparams.get("database", ""))
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    wal = Path(path + "-wal")
    refused = any(_unwritable(p) for p in (Path(path), wal, Path(path + "-shm")))
    if refused or (not wal.exists() and not os.access(Path(path).parent, os.W_OK)):  # created beside the file
        raise AuditUnavailableError("audit log: the log cannot be written (read-only); retry")


def _unwritable(path: Path) -> bool:
    """Whether ``path`` is there and cannot be written. Other connections create the write-ahead
    log and its index, and the last to close deletes them, at any moment: a file that is absent
    when asked about and there a moment later is asked again (a file is never opened here: a
    descriptor of it closed would drop SQLite's locks on it for the whole process)."""
    if os.access(path, os.W_OK) or not path.exists():
        return False
    return not os.access(path, os.W_OK) and path.exists()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_LIMIT_PAGES}")
    cur.close()


def _checkpoint_loop(engine: sa.engine.Engine, stop: threading.Event) -> None:
    """Move the write-ahead log into the database every ``CHECKPOINT_EVERY_S`` without
    blocking writers (PASSIVE), off the deciding threads (SQLite lets go of the interpreter
    lock while it works). A failed round is retried at the next.

    Each round opens its own connection (~0.3 ms every half second): one kept open for good
    would keep the process's shared index of the write-ahead log alive whatever happened to
    the file meanwhile (see ``_writable_or_refused``), and a PASSIVE round that cannot write
    says nothing."""
    while not stop.wait(CHECKPOINT_EVERY_S):
        conn = None
        try:
            conn = engine.raw_connection()
            cur = conn.cursor()
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cur.close()
        except Exception:  # noqa: BLE001 - the file went or is busy: writers stay bounded by WAL_LIMIT_PAGES
            pass
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
