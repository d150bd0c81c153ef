from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.migrations import upgrade_to_head

VERSION_TABLE = "alembic_version_notifier"


async def upgrade(engine: AsyncEngine) -> None:
    await upgrade_to_head(engine, Path(__file__).parent, VERSION_TABLE)
