"""Alembic environment: always given a connection by servicekit.migrations."""

from alembic import context

from mis_sync.store import metadata

config = context.config
context.configure(
    connection=config.attributes["connection"],
    target_metadata=metadata,
    version_table=config.attributes["version_table"],
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
