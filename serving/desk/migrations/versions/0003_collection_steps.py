"""The collection steps taken on overdue invoices (who, when, the outcome), append-only.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLE = "desk_collection_steps"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("invoice_id", sa.String(255), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("promised_date", sa.String(10)),
        sa.Column("note", sa.Text),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(255)),
    )
    op.create_index("ix_desk_collection_steps_invoice", _TABLE, ["customer_id", "invoice_id", "id"])
    op.create_index("ux_desk_collection_steps_request", _TABLE, ["request_id"], unique=True)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":  # the function revision 0001 made
        op.execute(f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE} "
                   "FOR EACH ROW EXECUTE FUNCTION riskcast_desk_append_only()")
    elif dialect == "sqlite":
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {_TABLE}_no_{what.lower()} BEFORE {what} ON {_TABLE} BEGIN "
                       f"SELECT RAISE(ABORT, 'riskcast desk: {_TABLE} is append-only ({what} refused)'); END")


def downgrade() -> None:
    raise NotImplementedError("the desk's records are kept: its tables are never dropped by a migration")
