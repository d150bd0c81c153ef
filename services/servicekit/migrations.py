"""Applying a service's Alembic migrations from code, on start-up and in tests.

Migrations ship inside each service's package, so they are found from any working directory.
On PostgreSQL an advisory lock lets several replicas start at once safely."""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(script_location: Path, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["version_table"] = version_table
    return config


async def upgrade_to_head(engine: AsyncEngine, script_location: Path, version_table: str) -> None:
    config = alembic_config(script_location, version_table)

    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            lock = zlib.crc32(version_table.encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def run_migrations(metadata: MetaData) -> None:
    """The whole of each service's Alembic `env.py`: always given a connection by
    `upgrade_to_head`, batch mode so SQLite can alter tables."""
    from alembic import context

    config = context.config
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=metadata,
        version_table=config.attributes["version_table"],
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
