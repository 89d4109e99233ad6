"""Run the desk's migrations on the connection ``serving.desk.migrate`` hands over (never a
URL of its own: the caller holds the lock two workers opening the database at once wait on)."""

from alembic import context

from riskcast.serving.desk.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
