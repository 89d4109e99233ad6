"""The desk: users and hashed keys, cases and their events, the approved-limit master and the
trail, each append-only.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = ("desk_users", "desk_keys", "desk_key_revocations", "desk_cases", "desk_case_events", "desk_limits",
           "desk_trail")


def upgrade() -> None:
    op.create_table(
        "desk_users",
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
    op.create_table(
        "desk_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
    )
    op.create_table(
        "desk_key_revocations",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
    )
    op.create_table(
        "desk_cases",
        sa.Column("case_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("customer_seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.String(32), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("customer_id", "customer_seq", name="ux_desk_cases_customer_seq"),
    )
    op.create_table(
        "desk_case_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("user_id", sa.String(64)),
        sa.Column("request_id", sa.String(255)),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("case_id", "seq", name="ux_desk_case_events_seq"),
    )
    op.create_index("ux_desk_case_events_request", "desk_case_events", ["request_id"], unique=True)
    op.create_table(
        "desk_limits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("credit_limit", sa.Float),
        sa.Column("terms_days", sa.Integer),
        sa.Column("band", sa.String(1)),
        sa.Column("approved_at", sa.String(32), nullable=False),
        sa.Column("review_date", sa.String(10), nullable=False),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_desk_limits_customer", "desk_limits", ["customer_id", "id"])
    op.create_table(
        "desk_trail",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("object", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("old", sa.Text),
        sa.Column("new", sa.Text),
    )
    op.create_index("ix_desk_trail_object", "desk_trail", ["object", "object_id"])
    _append_only(op.get_bind().dialect.name)


def _append_only(dialect: str) -> None:
    """Refuse UPDATE and DELETE on every desk table, in the database itself."""
    if dialect == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION riskcast_desk_append_only() RETURNS trigger AS $$ "
                   "BEGIN RAISE EXCEPTION 'riskcast desk: % is append-only (% refused)', TG_TABLE_NAME, TG_OP; END; "
                   "$$ LANGUAGE plpgsql")
        for table in _TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION riskcast_desk_append_only()")
    elif dialect == "sqlite":
        for table in _TABLES:
            for what in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{what.lower()} BEFORE {what} ON {table} BEGIN "
                           f"SELECT RAISE(ABORT, 'riskcast desk: {table} is append-only ({what} refused)'); END")


def downgrade() -> None:
    raise NotImplementedError("the desk's records are kept: its tables are never dropped by a migration")
