from __future__ import annotations

from pathlib import Path

from servicekit.migrations import upgrade_to_head
from sqlalchemy.ext.asyncio import AsyncEngine

VERSION_TABLE = "alembic_version_triage"


async def upgrade(engine: AsyncEngine) -> None:
    await upgrade_to_head(engine, Path(__file__).parent, VERSION_TABLE)
