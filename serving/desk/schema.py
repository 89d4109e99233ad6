"""The desk's tables. Every one is append-only (the migrations add triggers that refuse an
UPDATE or DELETE): a case's state is the fold of its events, a customer's limit is its latest
row, a user's role its latest version, a key's revocation a row of its own.

A case's events are numbered per case (``seq``, unique with ``case_id``): an action states
the number it read, and of two actions on the same reading only the first can insert the next
number. The same holds for a customer's cases (``customer_seq``): of two referrals racing to
open a customer's case one opens it and the other joins it.
"""

from __future__ import annotations

import sqlalchemy as sa

#: the version table of the desk's migrations: a database shared with MLflow keeps its own
VERSION_TABLE = "riskcast_desk_version"

metadata = sa.MetaData()

users = sa.Table(
    "desk_users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.UniqueConstraint("user_id", "version", name="ux_desk_users_version"),
)

keys = sa.Table(
    "desk_keys", metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),  # SHA-256 of the key; the key is never stored
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
)

revocations = sa.Table(
    "desk_key_revocations", metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
)

cases = sa.Table(
    "desk_cases", metadata,
    sa.Column("case_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(255), nullable=False),
    sa.Column("customer_seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),          # referral | review
    sa.Column("opened_at", sa.String(32), nullable=False),
    sa.Column("opened_by", sa.String(64), nullable=False),     # order entry | rescore | review | a user
    sa.UniqueConstraint("customer_id", "customer_seq", name="ux_desk_cases_customer_seq"),
)

events = sa.Table(
    "desk_case_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),          # referred | review_due | approval | decided
    sa.Column("user_id", sa.String(64)),                        # null: the system
    sa.Column("request_id", sa.String(255)),                    # the order a referral brought
    sa.Column("body", sa.Text, nullable=False),                 # JSON: the facts or the decision
    sa.UniqueConstraint("case_id", "seq", name="ux_desk_case_events_seq"),
    sa.Index("ux_desk_case_events_request", "request_id", unique=True),
)

limits = sa.Table(
    "desk_limits", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(255), nullable=False),
    sa.Column("credit_limit", sa.Float),  # null: the approved limit withdrawn
    sa.Column("terms_days", sa.Integer),
    sa.Column("band", sa.String(1)),
    sa.Column("approved_at", sa.String(32), nullable=False),
    sa.Column("review_date", sa.String(10), nullable=False),   # YYYY-MM-DD: the limit stands until then
    sa.Column("case_id", sa.Integer, nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=False),  # one id, or two joined by ','
    sa.Index("ix_desk_limits_customer", "customer_id", "id"),
)

trail = sa.Table(
    "desk_trail", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),       # 'system' for the service's own
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("object", sa.String(16), nullable=False),        # case | limit | user | key | invoice
    sa.Column("object_id", sa.String(255), nullable=False),
    sa.Column("old", sa.Text),                                  # JSON, null: nothing before
    sa.Column("new", sa.Text),                                  # JSON
    sa.Index("ix_desk_trail_object", "object", "object_id"),
)

steps = sa.Table(
    "desk_collection_steps", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(255), nullable=False),
    sa.Column("invoice_id", sa.String(255), nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),         # a stage of the configured ladder
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("promised_date", sa.String(10)),                 # YYYY-MM-DD: a promise to pay
    sa.Column("note", sa.Text),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(255)),                   # a retried record is one row
    sa.Index("ix_desk_collection_steps_invoice", "customer_id", "invoice_id", "id"),
    sa.Index("ux_desk_collection_steps_request", "request_id", unique=True),
)

#: the tables an UPDATE or DELETE is refused on
APPEND_ONLY = tuple(t.name for t in metadata.sorted_tables)
