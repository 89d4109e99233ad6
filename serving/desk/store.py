"""The desk's records on SQLite or PostgreSQL: users and keys, cases, the approved-limit
master and the trail. Every write appends (see ``schema``); every action appends its trail
row in the transaction that takes it, so the trail and the records never disagree.

Concurrency rests on the tables' unique keys, not on locks held while a person reads: a
decision names the case event it read (``seen``) and inserts the next; of two decisions on
the same reading the database lets one in and the other is told (``StaleCaseError``). A
transaction that lost such a race to another writer's referral is tried again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import sqlalchemy as sa

from riskcast.config import ROLES, CollectionsConfig, DeskConfig
from riskcast.errors import AuthError, AuthorityError, ConfigError, InputError, NotFoundError, StaleCaseError

from . import schema as t
from .authority import LIMIT_ACTIONS, check_action, check_authority, decision_amount, needed, override

#: a transaction that lost a race for a unique key is tried this often before giving up
_RETRIES = 8
SYSTEM = "system"
_KEY_BYTES = 24


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


def key_hash(key: str) -> str:
    """Keys are 192 random bits: a plain SHA-256 cannot be reversed or searched, and a lookup by
    it takes one index probe."""
    return hashlib.sha256(key.encode()).hexdigest()


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the month's last day when it has no such day."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        with contextlib.suppress(ValueError):
            return date(year, month, d)
    raise AssertionError("unreachable")


def stands(limit: Mapping[str, Any], today: date) -> bool:
    """Whether an approved-limit row decides on ``today``: a limit (not withdrawn) whose
    review date has not come. Order entry, the rescore and the review sweep all ask this."""
    return limit["credit_limit"] is not None and date.fromisoformat(limit["review_date"]) > today


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    role: str
    active: bool


@dataclass(frozen=True)
class Referral:
    """What the system knew of an order it referred, or of a customer to review (its limit's
    review fell due, or it is on the watchlist: ``review``, with a ``request_id`` that makes a
    rescore run again refer it once)."""

    customer_id: str
    request_id: str | None
    facts: Mapping[str, Any]          # pd_12m, grade, band, exposure, limits, terms, reasons, decision, ...
    review: bool = False


@dataclass
class Case:
    """A case as its events leave it."""

    case_id: int
    customer_id: str
    kind: str
    opened_at: str
    opened_by: str
    seq: int = 0
    state: str = "open"              # open | awaiting_second | decided
    orders: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)   # the latest referral's
    approvals: list[dict[str, Any]] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    watch: list[dict[str, Any]] = field(default_factory=list)   # the watchlist's hits that referred it

    @property
    def exposure(self) -> float:
        """The customer's open receivables with every order the case holds."""
        if not self.orders:
            return float(self.facts.get("exposure") or 0.0)
        open_ = self.orders[-1]["exposure"] - self.orders[-1]["order_amount"]
        return round(open_ + sum(o["order_amount"] for o in self.orders), 2)

    @property
    def priority(self) -> float:
        """Exposure x PD: what the case puts at stake; an unscored case counts at PD 1."""
        pd_ = self.facts.get("pd_12m")
        return self.exposure * (1.0 if pd_ is None else float(pd_))

    @property
    def recommended_limit(self) -> float | None:
        v = self.facts.get("recommended_limit")
        return None if v is None else float(v)

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "customer_id": self.customer_id, "kind": self.kind, "state": self.state,
                "opened_at": self.opened_at, "opened_by": self.opened_by, "seq": self.seq,
                "exposure": self.exposure, "priority": round(self.priority, 2), "facts": self.facts,
                "orders": self.orders, "approvals": self.approvals, "decision": self.decision, "watch": self.watch}


def _fold(row: Mapping[str, Any], evs: Sequence[Mapping[str, Any]]) -> Case:
    case = Case(row["case_id"], row["customer_id"], row["kind"], row["opened_at"], row["opened_by"])
    for e in evs:
        body = json.loads(e["body"])
        case.seq = e["seq"]
        case.events.append({"seq": e["seq"], "at": e["at"], "kind": e["kind"], "user_id": e["user_id"],
                            "request_id": e["request_id"], **body})
        if e["kind"] in ("referred", "review_due"):
            if e["kind"] == "referred" or not case.orders:  # a review joining a referral keeps its order's facts
                case.facts = body
            case.watch.extend(body.get("watchlist") or ())
            if case.state == "awaiting_second":  # what was approved is no longer the case: two approve it afresh
                case.state, case.approvals = "open", []
            if e["kind"] == "referred":
                case.orders.append({"request_id": e["request_id"], "order_amount": float(body.get("order_amount") or 0),
                                    "exposure": float(body.get("exposure") or 0), "at": e["at"],
                                    "system_decision": body.get("decision"), "final_decision": None})
        elif e["kind"] == "approval":
            case.approvals.append({"user_id": e["user_id"], "at": e["at"], **body})
            case.state = "awaiting_second"
        elif e["kind"] == "decided":
            case.decision = {"user_id": e["user_id"], "at": e["at"], **body}
            case.state = "decided"
            finals = body.get("orders", {})
            for o in case.orders:
                o["final_decision"] = finals.get(o["request_id"])
    return case


class DeskStore:
    """The desk's database. ``clock`` gives today's date (tests move it to a review date)."""

    def __init__(self, url: str, cfg: DeskConfig | None = None, *, clock: Callable[[], date] | None = None,
                 collections: CollectionsConfig | None = None) -> None:
        self.url = url
        self.cfg = cfg or DeskConfig()
        self.collections = collections or CollectionsConfig()
        self.clock = clock or (lambda: datetime.now(timezone.utc).date())
        sqlite_db = url.startswith("sqlite")
        self.engine = sa.create_engine(url, **({"connect_args": {"timeout": 30}} if sqlite_db else
                                               {"pool_timeout": 5, "connect_args": {"connect_timeout": 5}}))
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            self.engine.dispose()
            raise ConfigError(f"desk.url: {self.engine.dialect.name} is not supported (SQLite or PostgreSQL)",
                              field="desk.url")
        if sqlite_db:
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        #: SQLite: each thread reads the limits master on a connection of its own, outside the
        #: pool (order entry reads it per order: 8 against 340 us through the pool)
        self._readers = threading.local() if sqlite_db and self.engine.url.database not in (None, "", ":memory:") \
            else None
        migrate(self.engine)

    def close(self) -> None:
        conn = getattr(self._readers, "conn", None) if self._readers is not None else None
        if conn is not None:
            self._readers.conn = None
            conn.close()
        self.engine.dispose()

    # -- transactions ------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE, so that a read and its write are one)."""
        with self.engine.connect() as conn:
            conn.info["write"] = True  # the pooled connection's: taken off before it goes back
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)

    def _retrying(self, work: Callable[[sa.Connection], Any]) -> Any:
        for attempt in range(_RETRIES):
            try:
                with self._tx() as conn:
                    return work(conn)
            except sa.exc.IntegrityError:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _trail(self, conn: sa.Connection, user_id: str, action: str, obj: str, obj_id: Any,
               old: Any, new: Any) -> None:
        conn.execute(t.trail.insert().values(at=_now(), user_id=user_id, action=action, object=obj,
                                             object_id=str(obj_id), old=None if old is None else _json(old),
                                             new=None if new is None else _json(new)))

    # -- users and keys ----------------------------------------------------------------
    def add_user(self, user_id: str, name: str, role: str, by: str) -> str:
        """A new user with a first key; returns the key (shown once, stored only hashed)."""
        _check_user_fields(user_id, name, role)

        def work(conn: sa.Connection) -> str:
            if _latest_user(conn, user_id) is not None:
                raise InputError(f"user_id: {user_id!r} exists (a role changes with set-role)", field="user_id")
            new = {"user_id": user_id, "version": 1, "name": name, "role": role, "active": True}
            conn.execute(t.users.insert().values(**new, at=_now(), by=by))
            self._trail(conn, by, "add_user", "user", user_id, None, new)
            return self._new_key(conn, user_id, "first key", by)
        return self._retrying(work)

    def set_role(self, user_id: str, role: str | None, by: str, *, active: bool | None = None) -> User:
        """A new version of the user: another role, or deactivated (its keys stop working)."""
        if role is not None and role not in ROLES:
            raise InputError(f"role: {role!r} is not one of {', '.join(ROLES)}", field="role")

        def work(conn: sa.Connection) -> User:
            old = _latest_user(conn, user_id)
            if old is None:
                raise NotFoundError(f"user_id: no user {user_id!r}", field="user_id")
            new = {"user_id": user_id, "version": old["version"] + 1, "name": old["name"],
                   "role": role or old["role"], "active": old["active"] if active is None else active}
            conn.execute(t.users.insert().values(**new, at=_now(), by=by))
            self._trail(conn, by, "set_role", "user", user_id, _user_dict(old), new)
            return User(user_id, new["name"], new["role"], new["active"])
        return self._retrying(work)

    def new_key(self, user_id: str, label: str, by: str) -> str:
        def work(conn: sa.Connection) -> str:
            if _latest_user(conn, user_id) is None:
                raise NotFoundError(f"user_id: no user {user_id!r}", field="user_id")
            return self._new_key(conn, user_id, label, by)
        return self._retrying(work)

    def _new_key(self, conn: sa.Connection, user_id: str, label: str, by: str) -> str:
        key = "rk_" + secrets.token_urlsafe(_KEY_BYTES)
        h = key_hash(key)
        conn.execute(t.keys.insert().values(key_hash=h, user_id=user_id, label=label, at=_now(), by=by))
        self._trail(conn, by, "new_key", "key", h[:12], None, {"user_id": user_id, "label": label})
        return key

    def revoke_key(self, key_or_prefix: str, by: str) -> str:
        """Revoke a key, given itself or at least the first 8 characters of its hash (as listed)."""
        h = key_hash(key_or_prefix) if key_or_prefix.startswith("rk_") else key_or_prefix.strip().lower()
        if not 8 <= len(h) <= 64 or any(c not in "0123456789abcdef" for c in h):
            raise InputError(f"key: the key itself, or 8 to 64 hexadecimal characters of its listed hash; got "
                             f"{key_or_prefix[:16]!r}", field="key")

        def work(conn: sa.Connection) -> str:
            rows = conn.execute(sa.select(t.keys.c.key_hash).where(t.keys.c.key_hash.startswith(h, autoescape=True))
                                ).all()
            if len(rows) != 1:
                raise NotFoundError(f"key: {'no' if not rows else 'more than one'} key matches {h[:12]!r}",
                                    field="key")
            full = rows[0][0]
            if conn.execute(sa.select(t.revocations.c.key_hash).where(t.revocations.c.key_hash == full)).first():
                raise InputError(f"key: {full[:12]} is revoked already", field="key")
            conn.execute(t.revocations.insert().values(key_hash=full, at=_now(), by=by))
            self._trail(conn, by, "revoke_key", "key", full[:12], None, {"revoked": True})
            return full[:12]
        return self._retrying(work)

    def authenticate(self, key: str | None) -> User:
        """The active user a key belongs to; ``AuthError`` for none, an unknown or revoked key."""
        if not key:
            raise AuthError("key: sign in with your desk key", field="key")
        h = key_hash(key)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.keys.c.user_id).where(t.keys.c.key_hash == h)).first()
            revoked = conn.execute(sa.select(t.revocations.c.key_hash).where(t.revocations.c.key_hash == h)).first()
            user = _latest_user(conn, row[0]) if row is not None else None
        if row is None or revoked is not None or user is None or not user["active"]:
            raise AuthError("key: not a key of an active desk user (unknown, revoked, or the user deactivated)",
                            field="key")
        return User(user["user_id"], user["name"], user["role"], bool(user["active"]))

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.users).order_by(t.users.c.id)).mappings().all()
            keys = conn.execute(sa.select(t.keys)).mappings().all()
            revoked = {r[0] for r in conn.execute(sa.select(t.revocations.c.key_hash))}
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            latest[r["user_id"]] = _user_dict(r)
        for u in latest.values():
            u["keys"] = [{"key": k["key_hash"][:12], "label": k["label"], "at": k["at"],
                          "revoked": k["key_hash"] in revoked} for k in keys if k["user_id"] == u["user_id"]]
        return list(latest.values())

    # -- cases -------------------------------------------------------------------------
    def refer(self, referrals: Sequence[Referral], by: str = "order entry") -> dict[str, int]:
        """Open a case for each referral, or join the customer's open case; a referral whose
        order is already in a case changes nothing (a retried order). Returns request_id (or
        customer_id for a review) -> case_id."""
        out: dict[str, int] = {}
        if len(referrals) > 1:  # a rescore's referrals: one transaction, unless one races another writer
            try:
                with self._tx() as conn:
                    return self._refer_many(conn, referrals, by)
            except sa.exc.IntegrityError:
                out.clear()
        for r in referrals:
            out[r.request_id or r.customer_id] = self._retrying(lambda conn, r=r: self._refer_one(conn, r, by))
        return out

    def _refer_one(self, conn: sa.Connection, r: Referral, by: str) -> int:
        if r.request_id is not None:
            had = conn.execute(sa.select(t.events.c.case_id).where(t.events.c.request_id == r.request_id)).first()
            if had is not None:
                return int(had[0])
        kind = "referred" if r.request_id is not None and not r.review else "review_due"
        latest = conn.execute(sa.select(t.cases).where(t.cases.c.customer_id == r.customer_id)
                              .order_by(t.cases.c.customer_seq.desc()).limit(1)).mappings().first()
        case = self._case_in(conn, latest) if latest is not None else None
        body = dict(r.facts)
        if case is not None and case.state != "decided":
            if kind == "review_due" and r.request_id is None:
                return case.case_id  # the open case is the review
            conn.execute(t.events.insert().values(case_id=case.case_id, seq=case.seq + 1, at=_now(), kind=kind,
                                                  user_id=None, request_id=r.request_id, body=_json(body)))
            self._trail(conn, SYSTEM, "join_case", "case", case.case_id, None,
                        {"request_id": r.request_id, "by": by})
            return case.case_id
        seq = 1 if latest is None else latest["customer_seq"] + 1
        case_id = conn.execute(t.cases.insert().values(
            customer_id=r.customer_id, customer_seq=seq, kind="referral" if kind == "referred" else "review",
            opened_at=_now(), opened_by=by)).inserted_primary_key[0]
        conn.execute(t.events.insert().values(case_id=case_id, seq=1, at=_now(), kind=kind, user_id=None,
                                              request_id=r.request_id, body=_json(body)))
        self._trail(conn, SYSTEM, "open_case", "case", case_id, None,
                    {"customer_id": r.customer_id, "request_id": r.request_id, "kind": kind, "by": by})
        return int(case_id)

    def _refer_many(self, conn: sa.Connection, referrals: Sequence[Referral], by: str) -> dict[str, int]:
        """``_refer_one`` for a batch, in a few statements however many referrals: what is on
        record read at once (orders already in a case, each customer's latest case), the new
        cases, events and trail rows written in bulk (a rescore refers thousands)."""
        known: dict[str, int] = {}
        rids = list({r.request_id for r in referrals if r.request_id is not None})
        for part in _chunks(rids):
            known.update((rid, int(cid)) for rid, cid in conn.execute(
                sa.select(t.events.c.request_id, t.events.c.case_id).where(t.events.c.request_id.in_(part))))
        customers = list({r.customer_id for r in referrals})
        latest: dict[str, Mapping[str, Any]] = {}
        for part in _chunks(customers):
            for row in conn.execute(sa.select(t.cases).where(t.cases.c.customer_id.in_(part))).mappings():
                had = latest.get(row["customer_id"])
                if had is None or row["customer_seq"] > had["customer_seq"]:
                    latest[row["customer_id"]] = row
        # each latest case's last event number and whether it is decided: all a referral needs
        seqs: dict[int, tuple[int, bool]] = {}
        decided = sa.func.max(sa.case((t.events.c.kind == "decided", 1), else_=0))
        for part in _chunks([row["case_id"] for row in latest.values()]):
            for case_id, seq, done in conn.execute(
                    sa.select(t.events.c.case_id, sa.func.max(t.events.c.seq), decided)
                    .where(t.events.c.case_id.in_(part)).group_by(t.events.c.case_id)):
                seqs[int(case_id)] = (int(seq), bool(done))
        # each customer's latest case as (case_id or a new case's place, last seq, open, customer_seq)
        state: dict[str, list[Any]] = {}
        for cid, row in latest.items():
            seq, done = seqs.get(row["case_id"], (0, False))
            state[cid] = [row["case_id"], seq, not done, row["customer_seq"]]
        new_cases: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []      # case_id, or ("new", place) until the new cases have ids
        trail: list[dict[str, Any]] = []
        out: dict[str, Any] = {}
        now = _now()
        for r in referrals:
            key = r.request_id or r.customer_id
            if r.request_id is not None and r.request_id in known:
                out[key] = known[r.request_id]
                continue
            kind = "referred" if r.request_id is not None and not r.review else "review_due"
            st = state.get(r.customer_id)
            body = _json(dict(r.facts))
            if st is not None and st[2]:
                if kind == "review_due" and r.request_id is None:
                    out[key] = st[0]  # the open case is the review
                    continue
                st[1] += 1
                events.append({"case_id": st[0], "seq": st[1], "at": now, "kind": kind, "user_id": None,
                               "request_id": r.request_id, "body": body})
                trail.append({"at": now, "user_id": SYSTEM, "action": "join_case", "object": "case",
                              "object_id": st[0], "old": None, "new": _json({"request_id": r.request_id, "by": by})})
            else:
                place = ("new", len(new_cases))
                new_cases.append({"customer_id": r.customer_id, "customer_seq": 1 if st is None else st[3] + 1,
                                  "kind": "referral" if kind == "referred" else "review", "opened_at": now,
                                  "opened_by": by})
                st = state[r.customer_id] = [place, 1, True, new_cases[-1]["customer_seq"]]
                events.append({"case_id": place, "seq": 1, "at": now, "kind": kind, "user_id": None,
                               "request_id": r.request_id, "body": body})
                trail.append({"at": now, "user_id": SYSTEM, "action": "open_case", "object": "case",
                              "object_id": place, "old": None, "new": _json(
                                  {"customer_id": r.customer_id, "request_id": r.request_id, "kind": kind, "by": by})})
            out[key] = st[0]
            if r.request_id is not None:
                known[r.request_id] = st[0]
        ids: list[int] = []
        if new_cases:
            ids = [int(i) for (i,) in conn.execute(
                t.cases.insert().returning(t.cases.c.case_id, sort_by_parameter_order=True), new_cases)]

        def real(case_id: Any) -> int:
            return ids[case_id[1]] if isinstance(case_id, tuple) else int(case_id)
        for e in events:
            e["case_id"] = real(e["case_id"])
        for row in trail:
            row["object_id"] = str(real(row["object_id"]))
        if events:
            conn.execute(t.events.insert(), events)
            conn.execute(t.trail.insert(), trail)
        return {k: real(v) for k, v in out.items()}

    def _case_in(self, conn: sa.Connection, row: Mapping[str, Any]) -> Case:
        evs = conn.execute(sa.select(t.events).where(t.events.c.case_id == row["case_id"])
                           .order_by(t.events.c.seq)).mappings().all()
        return _fold(row, evs)

    def case(self, case_id: int) -> Case:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.cases).where(t.cases.c.case_id == case_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"case_id: no case {case_id}", field="case_id")
            return self._case_in(conn, row)

    def known_orders(self, request_ids: Sequence[str]) -> set[str]:
        """Which of ``request_ids`` a case holds already (a rescore run again)."""
        out: set[str] = set()
        with self.engine.connect() as conn:
            for part in _chunks(list(set(request_ids))):
                out.update(r for (r,) in conn.execute(sa.select(t.events.c.request_id)
                                                      .where(t.events.c.request_id.in_(part))))
        return out

    def open_case_ids(self) -> set[int]:
        """The cases not decided: every case but those with a decision (no case is folded)."""
        with self.engine.connect() as conn:
            every = {int(c) for (c,) in conn.execute(sa.select(t.cases.c.case_id))}
            done = {int(c) for (c,) in conn.execute(sa.select(t.events.c.case_id).where(t.events.c.kind == "decided"))}
        return every - done

    def case_of_order(self, request_id: str) -> int | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.events.c.case_id).where(t.events.c.request_id == request_id)).first()
        return None if row is None else int(row[0])

    def cases(self, customer_id: str | None = None, open_only: bool = False) -> list[Case]:
        """Cases (of one customer), each folded; one query for the cases, one for their events."""
        with self.engine.connect() as conn:
            q = sa.select(t.cases)
            if customer_id is not None:
                q = q.where(t.cases.c.customer_id == customer_id)
            rows = conn.execute(q.order_by(t.cases.c.case_id)).mappings().all()
            ids = [r["case_id"] for r in rows]
            evs: dict[int, list] = {i: [] for i in ids}
            if ids:
                eq = sa.select(t.events).order_by(t.events.c.case_id, t.events.c.seq)
                if customer_id is not None:
                    eq = eq.where(t.events.c.case_id.in_(ids))
                for e in conn.execute(eq).mappings():
                    evs.setdefault(e["case_id"], []).append(e)
        out = [_fold(r, evs[r["case_id"]]) for r in rows]
        return [c for c in out if c.state != "decided"] if open_only else out

    def queue(self) -> list[Case]:
        """Open cases, the most at stake first (exposure x PD), then the oldest."""
        return sorted(self.cases(open_only=True), key=lambda c: (-c.priority, c.opened_at, c.case_id))

    def decide(self, case_id: int, user: User, seen: int, action: str, *, reason_code: str, text: str,
               credit_limit: float | None = None, terms_days: int | None = None,
               conditions: Sequence[str] = ()) -> Case:
        """Take a decision on a case read at event ``seen``, under the user's authority. Above
        the highest authority the first approval waits for a second by another person, who
        confirms it (the same action, limit and terms) or declines."""
        if terms_days is not None and (isinstance(terms_days, bool) or not isinstance(terms_days, int)
                                       or not 0 <= terms_days <= 365):
            raise InputError(f"terms_days: a whole number of days in [0, 365]; got {terms_days!r}", field="terms_days")
        conditions = [c.strip() for c in conditions if c and c.strip()]
        if action == "approve_with_conditions" and not conditions:
            raise InputError("conditions: approve_with_conditions needs at least one condition", field="conditions")

        def work(conn: sa.Connection) -> Case:
            row = conn.execute(sa.select(t.cases).where(t.cases.c.case_id == case_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"case_id: no case {case_id}", field="case_id")
            case = self._case_in(conn, row)
            if case.seq != seen:
                last = case.events[-1]
                raise StaleCaseError(
                    f"case {case_id}: changed since you read it ({last['kind'].replace('_', ' ')} by "
                    f"{last['user_id'] or 'the system'} at {last['at'][:19]}); read it again", field="seen")
            if case.state == "decided":
                raise StaleCaseError(f"case {case_id}: already decided", field="seen")
            exposure = case.exposure
            check_action(action, credit_limit, exposure, reason_code, text, self.cfg)
            amount = decision_amount(action, credit_limit, exposure)
            need = needed(amount, self.cfg)
            first = case.approvals[-1] if case.state == "awaiting_second" else None
            if action == "decline":  # accepts no exposure; but only a possible second approver overrules a first
                check_authority(user.role, user.user_id, needed(first["amount"] if first else 0.0, self.cfg), None)
            else:
                check_authority(user.role, user.user_id, need, first["user_id"] if first else None)
                if first is not None and (first["action"], first.get("credit_limit"), first.get("terms_days")) != (
                        action, credit_limit, terms_days):
                    raise AuthorityError(
                        f"authority: the second approval confirms the first ({first['action']} at "
                        f"{first.get('credit_limit') or 0:,.2f}, terms {first.get('terms_days')}, by "
                        f"{first['user_id']}) or declines", field="authority")
            body = {"action": action, "credit_limit": credit_limit, "terms_days": terms_days,
                    "conditions": conditions, "reason_code": reason_code, "text": text.strip(),
                    "role": user.role, "amount": round(amount, 2)}
            if action != "decline" and need.approvers == 2 and first is None:
                conn.execute(t.events.insert().values(case_id=case_id, seq=seen + 1, at=_now(), kind="approval",
                                                      user_id=user.user_id, request_id=None, body=_json(body)))
                self._trail(conn, user.user_id, "first_approval", "case", case_id, {"state": case.state}, body)
                return self._case_in(conn, row)
            body["override"] = override(action, credit_limit, exposure, case.recommended_limit)
            body["approvers"] = [*(a["user_id"] for a in case.approvals[-1:] if first), user.user_id]
            body["orders"] = _final_orders(case, action, credit_limit)
            body["system_decision"] = case.facts.get("decision")
            body["recommended_limit"] = case.recommended_limit
            conn.execute(t.events.insert().values(case_id=case_id, seq=seen + 1, at=_now(), kind="decided",
                                                  user_id=user.user_id, request_id=None, body=_json(body)))
            self._trail(conn, user.user_id, "decide", "case", case_id, {"state": case.state}, body)
            if action in LIMIT_ACTIONS or case.kind == "review":
                self._write_limit(conn, case, body, user)
            return self._case_in(conn, row)
        try:
            return self._retrying(work)
        except sa.exc.IntegrityError:
            raise StaleCaseError(f"case {case_id}: another decision was recorded at the same moment; read it again",
                                 field="seen") from None

    def _write_limit(self, conn: sa.Connection, case: Case, body: Mapping[str, Any], user: User) -> None:
        band = case.facts.get("band")
        months = self.cfg.review_months.get(band or "E", min(self.cfg.review_months.values()))
        today = self.clock()
        withdrawn = body["action"] == "decline"  # a review declined: the approved limit ends
        new = {"customer_id": case.customer_id, "credit_limit": None if withdrawn else body["credit_limit"],
               "terms_days": body["terms_days"], "band": band, "approved_at": _now(),
               "review_date": (today if withdrawn else add_months(today, months)).isoformat(),
               "case_id": case.case_id, "approved_by": ",".join(body["approvers"])}
        old = _latest_limit(conn, case.customer_id)
        conn.execute(t.limits.insert().values(**new))
        self._trail(conn, user.user_id, "withdraw_limit" if withdrawn else "approve_limit", "limit",
                    case.customer_id, None if old is None else _limit_dict(old), new)

    # -- the approved-limit master ---------------------------------------------------------
    def approved_limit(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's latest approved limit row (its review date says whether it stands);
        None when the desk never approved one."""
        if self._readers is not None:
            conn = getattr(self._readers, "conn", None)
            if conn is None:  # autocommit: each read sees what was committed before it
                conn = self._readers.conn = sqlite3.connect(self.engine.url.database, timeout=30,
                                                            isolation_level=None, check_same_thread=False)
            found = conn.execute(_LATEST_LIMIT_SQL, (customer_id,)).fetchone()
            return None if found is None else dict(zip(_LIMIT_COLUMNS, found))
        with self.engine.connect() as conn:
            row = _latest_limit(conn, customer_id)
        return None if row is None else _limit_dict(row)

    def limits(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        """Every approved-limit row (of one customer), oldest first."""
        q = sa.select(t.limits).order_by(t.limits.c.id)
        if customer_id is not None:
            q = q.where(t.limits.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [_limit_dict(r) for r in conn.execute(q).mappings()]

    def current_limits(self) -> dict[str, dict[str, Any]]:
        """Each customer's latest approved-limit row."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.limits():
            out[r["customer_id"]] = r
        return out

    def open_reviews(self, today: date | None = None) -> dict[str, int]:
        """A review case for every customer whose approved limit's review date has come and
        that has no open case (its open case is the review). Returns customer_id -> case_id."""
        today = today or self.clock()
        due = [r for r in self.current_limits().values() if r["credit_limit"] is not None and not stands(r, today)]
        return self.refer([Referral(r["customer_id"], None, {
            "decision": "review", "decision_reason": f"the approved limit's review fell due on {r['review_date']}",
            "approved_limit": r["credit_limit"], "review_date": r["review_date"], "band": r["band"],
            "recommended_limit": r["credit_limit"], "exposure": 0.0}) for r in due], by="review")

    # -- collections ---------------------------------------------------------------------
    def record_step(self, customer_id: str, invoice_id: str, stage: str, outcome: str, by: str, *,
                    note: str | None = None, promised_date: str | None = None,
                    request_id: str | None = None) -> dict[str, Any]:
        """A collection step taken on an invoice (the stage of the ladder it answers, its
        outcome, who and when), with its trail row. A ``request_id`` seen before returns the
        step on record, so that a retried form or command is one step."""
        fields = _check_step(self.collections, customer_id, invoice_id, stage, outcome, note, promised_date,
                             request_id)
        if not by or len(by) > 64:
            raise InputError(f"by: who records the step, 1-64 characters; got {by[:80]!r}", field="by")

        def work(conn: sa.Connection) -> dict[str, Any]:
            if request_id is not None:
                seen = conn.execute(sa.select(t.steps).where(t.steps.c.request_id == request_id)).mappings().first()
                if seen is not None:
                    return dict(seen)
            row = {**fields, "at": _now(), "user_id": by}
            new_id = conn.execute(t.steps.insert().values(**row)).inserted_primary_key[0]
            self._trail(conn, by, "collection_step", "invoice", invoice_id, None,
                        {k: row[k] for k in ("customer_id", "stage", "outcome", "promised_date", "note")})
            return {"id": new_id, **row}
        return self._retrying(work)

    def steps(self, customer_id: str | None = None, invoice_id: str | None = None) -> list[dict[str, Any]]:
        """The collection steps on record, oldest first (of one customer, or one invoice)."""
        q = sa.select(t.steps)
        if customer_id is not None:
            q = q.where(t.steps.c.customer_id == customer_id)
        if invoice_id is not None:
            q = q.where(t.steps.c.invoice_id == invoice_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(t.steps.c.id)).mappings()]

    def review_grades(self, today: date | None = None) -> list[dict[str, Any]]:
        """The grade each customer with a standing approved limit had when it was approved
        (the case's facts), and the day: the watchlist counts a grade drop from there."""
        today = today or self.clock()
        out = []
        for cid, row in self.current_limits().items():
            if not stands(row, today):
                continue
            grade = self.case(row["case_id"]).facts.get("grade")
            if grade is not None:
                out.append({"customer_id": cid, "grade": str(grade), "reviewed_on": row["approved_at"][:10]})
        return out

    # -- the trail -----------------------------------------------------------------------
    def trail(self, obj: str | None = None, obj_id: str | None = None, last: int = 200) -> list[dict[str, Any]]:
        q = sa.select(t.trail)
        if obj is not None:
            q = q.where(t.trail.c.object == obj)
        if obj_id is not None:
            q = q.where(t.trail.c.object_id == str(obj_id))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.trail.c.id.desc()).limit(last)).mappings().all()
        return [{**r, "old": json.loads(r["old"]) if r["old"] else None,
                 "new": json.loads(r["new"]) if r["new"] else None} for r in reversed(rows)]


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Pieces of ``values`` small enough for one ``IN (...)`` of either database."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _final_orders(case: Case, action: str, credit_limit: float | None) -> dict[str, str]:
    """Each order of the case as the desk decided it; ``set_limit`` approves the orders, in the
    order they came, while the exposure stays within the limit."""
    if action != "set_limit":
        return {o["request_id"]: action for o in case.orders}
    out: dict[str, str] = {}
    if not case.orders:
        return out
    exposure = case.orders[-1]["exposure"] - case.orders[-1]["order_amount"]
    for o in case.orders:
        fits = exposure + o["order_amount"] <= (credit_limit or 0.0) + 0.005
        out[o["request_id"]] = "approve" if fits else "decline"
        if fits:
            exposure += o["order_amount"]
    return out


def _latest_user(conn: sa.Connection, user_id: str) -> Mapping[str, Any] | None:
    return conn.execute(sa.select(t.users).where(t.users.c.user_id == user_id)
                        .order_by(t.users.c.version.desc()).limit(1)).mappings().first()


def _latest_limit(conn: sa.Connection, customer_id: str) -> Mapping[str, Any] | None:
    return conn.execute(sa.select(t.limits).where(t.limits.c.customer_id == customer_id)
                        .order_by(t.limits.c.id.desc()).limit(1)).mappings().first()


_LIMIT_COLUMNS = ("id", "customer_id", "credit_limit", "terms_days", "band", "approved_at", "review_date", "case_id",
                  "approved_by")
_LATEST_LIMIT_SQL = (f"SELECT {', '.join(_LIMIT_COLUMNS)} FROM desk_limits WHERE customer_id = ? "
                     "ORDER BY id DESC LIMIT 1")


def _user_dict(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("user_id", "version", "name", "role", "active", "at", "by")}


def _limit_dict(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in _LIMIT_COLUMNS if k in r}


def _check_user_fields(user_id: str, name: str, role: str) -> None:
    if not user_id or len(user_id) > 64 or not all(c.isalnum() or c in "._-@" for c in user_id):
        raise InputError(f"user_id: 1-64 letters, digits or ._-@; got {user_id!r}", field="user_id")
    if not name or not name.strip() or len(name) > 200 or not name.isprintable():
        raise InputError("name: 1-200 printable characters (no line breaks)", field="name")
    if role not in ROLES:
        raise InputError(f"role: {role!r} is not one of {', '.join(ROLES)}", field="role")


def _check_step(collections: CollectionsConfig, customer_id: str, invoice_id: str, stage: str, outcome: str,
                note: str | None, promised_date: str | None, request_id: str | None) -> dict[str, Any]:
    for name, value in (("customer_id", customer_id), ("invoice_id", invoice_id)):
        if not value or len(value) > 255:
            raise InputError(f"{name}: 1-255 characters", field=name)
    stages = [s.name for s in collections.stages]
    if stage not in stages:
        raise InputError(f"stage: {stage!r} is not a stage of the ladder ({', '.join(stages)})", field="stage")
    if outcome not in collections.outcomes:
        raise InputError(f"outcome: {outcome!r} is not one of {', '.join(collections.outcomes)}", field="outcome")
    if note is not None and len(note) > 2000:
        raise InputError("note: at most 2,000 characters", field="note")
    if promised_date is not None:
        try:
            if len(promised_date) != 10 or promised_date[4] != "-" or promised_date[7] != "-":
                raise ValueError(promised_date)
            promised_date = date.fromisoformat(promised_date).isoformat()
        except (TypeError, ValueError):
            raise InputError(f"promised_date: {promised_date!r} is not a date (YYYY-MM-DD)",
                             field="promised_date") from None
        if outcome != "promise to pay":
            raise InputError("promised_date: only a promise to pay has one", field="promised_date")
    if request_id is not None and not 1 <= len(request_id) <= 255:
        raise InputError("request_id: 1-255 characters", field="request_id")
    return {"customer_id": customer_id, "invoice_id": invoice_id, "stage": stage, "outcome": outcome,
            "promised_date": promised_date, "note": note or None, "request_id": request_id}


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions begun by ``_sqlite_begin``, not by the driver
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    """A write takes the lock when it begins, so that its reads see what it writes on: a
    deferred transaction that reads and then writes fails at once when another wrote between."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def migrate(engine: sa.engine.Engine) -> str:
    """Bring the database to the desk's newest schema, once however many processes open it at
    once (SQLite: a lock file beside the database; PostgreSQL: an advisory lock). Returns the
    revision it is at."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with _migration_lock(engine):
        with engine.connect() as conn:
            current = MigrationContext.configure(conn, opts={"version_table": t.VERSION_TABLE}).get_current_revision()
            if current == head:
                return head
            scripts = ScriptDirectory.from_config(cfg)
            if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
                raise ConfigError(f"desk.url: the desk's schema is at revision {current}, newer than this version of "
                                  "riskcast knows", field="desk.url")
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7406913523)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    return head


@contextlib.contextmanager
def _migration_lock(engine: sa.engine.Engine) -> Iterator[None]:
    if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
        yield
        return
    lock = Path(engine.url.database + ".migrate.lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
