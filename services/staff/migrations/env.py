"""Alembic environment: always given a connection by servicekit.migrations."""

from servicekit.migrations import run_migrations

from staff.models import metadata

run_migrations(metadata)
