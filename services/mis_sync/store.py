"""What the MIS sync remembers per school: how far it has read (Wonde's `updated_after`
cursors), the roster it last uploaded, and whether the school still lets us in.

A small database rather than a file: the same engine and migrations as the services (SQLite
on one machine, PostgreSQL when the process runs in a container without a persistent disk),
and every change is one transaction, so a crash never leaves a cursor half-written or ahead of
what was handed over. A cursor moves only after its marks were confirmed by the broker or its
roster accepted by triage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from servicekit.database import UtcDateTime
from servicekit.migrations import upgrade_to_head
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mis_sync.settings import SchoolLink

metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})

schools = Table(
    "wonde_schools",
    metadata,
    Column("wonde_id", String(32), primary_key=True),
    Column("urn", String(8), nullable=False),
    Column("state", String(16), nullable=False),  # SchoolState
    # The HTTP status Wonde answered when it refused us, and when.
    Column("refused_status", Integer, nullable=True),
    Column("refused_at", UtcDateTime, nullable=True),
    # Wonde's own `updated_at` of the newest record handed over, per resource.
    Column("roster_cursor", UtcDateTime, nullable=True),
    Column("attendance_cursor", UtcDateTime, nullable=True),
    # SHA-256 of the last school document triage accepted: an unchanged roster is not re-sent.
    Column("roster_digest", String(64), nullable=True),
    Column("last_synced_at", UtcDateTime, nullable=True),
)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "mis_sync_alembic_version"


class SchoolState(StrEnum):
    ACTIVE = "active"
    # Wonde answered 401 or 403: the school revoked the app's access. Not synced again until
    # an operator runs `python -m mis_sync resume URN`.
    REVOKED = "revoked"


@dataclass(frozen=True)
class SchoolStatus:
    wonde_id: str
    urn: str
    state: SchoolState
    refused_status: int | None
    refused_at: dt.datetime | None
    roster_cursor: dt.datetime | None
    attendance_cursor: dt.datetime | None
    roster_digest: str | None
    last_synced_at: dt.datetime | None

    def report(self) -> dict[str, object]:
        """The status line `python -m mis_sync status` prints (ids and times only)."""
        def iso(when: dt.datetime | None) -> str | None:
            return when.isoformat() if when else None
        return {"urn": self.urn, "wonde_school_id": self.wonde_id, "state": self.state.value,
                "refused_status": self.refused_status, "refused_at": iso(self.refused_at),
                "roster_cursor": iso(self.roster_cursor),
                "attendance_cursor": iso(self.attendance_cursor),
                "last_synced_at": iso(self.last_synced_at)}


async def migrate(engine: AsyncEngine) -> None:
    await upgrade_to_head(engine, MIGRATIONS, VERSION_TABLE)


async def status(engine: AsyncEngine, link: SchoolLink) -> SchoolStatus:
    """The school's row, made on first sight (a school newly listed in WONDE_SCHOOLS)."""
    async with engine.begin() as conn:
        found = (await conn.execute(
            select(schools).where(schools.c.wonde_id == link.wonde_id))).mappings().first()
        row: dict[str, Any]
        if found is None:
            row = {column.name: None for column in schools.columns} | {
                "wonde_id": link.wonde_id, "urn": link.urn, "state": SchoolState.ACTIVE.value}
            await conn.execute(schools.insert().values(row))
        elif found["urn"] != link.urn:
            # The mapping was corrected: the cursors belong to the Wonde school, so they stay.
            await conn.execute(update(schools).where(schools.c.wonde_id == link.wonde_id)
                               .values(urn=link.urn, roster_digest=None))
            row = {**found, "urn": link.urn, "roster_digest": None}
        else:
            row = dict(found)
    return _typed(row)


def _typed(row: Mapping[str, Any]) -> SchoolStatus:
    return SchoolStatus(**{**row, "state": SchoolState(row["state"])})


async def all_statuses(engine: AsyncEngine) -> list[SchoolStatus]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(schools).order_by(schools.c.urn))).mappings().all()
    return [_typed(dict(row)) for row in rows]


async def revoke(engine: AsyncEngine, wonde_id: str, http_status: int, now: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(schools).where(schools.c.wonde_id == wonde_id).values(
            state=SchoolState.REVOKED.value, refused_status=http_status, refused_at=now))


async def resume(engine: AsyncEngine, urn: str) -> bool:
    """Sync a revoked school again (it approved the app anew); False for an unknown URN."""
    async with engine.begin() as conn:
        result = await conn.execute(update(schools).where(schools.c.urn == urn).values(
            state=SchoolState.ACTIVE.value, refused_status=None, refused_at=None))
    return bool(result.rowcount)


async def roster_synced(engine: AsyncEngine, wonde_id: str, cursor: dt.datetime | None,
                        digest: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(schools).where(schools.c.wonde_id == wonde_id)
                           .values(roster_cursor=cursor, roster_digest=digest))


async def attendance_synced(engine: AsyncEngine, wonde_id: str, cursor: dt.datetime | None,
                            now: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(schools).where(schools.c.wonde_id == wonde_id)
                           .values(attendance_cursor=cursor, last_synced_at=now))
