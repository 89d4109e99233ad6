"""The audit log's decisions by customer: the desk's customer page reads a customer's history.
Only where the audit log shares the desk's database (the default, and the audit log is opened
first); elsewhere there is nothing to index.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "decisions" not in inspector.get_table_names():
        return
    if not any(ix["name"] == "ix_decisions_customer" for ix in inspector.get_indexes("decisions")):
        op.create_index("ix_decisions_customer", "decisions", ["customer_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_decisions_customer", table_name="decisions")
