"""What the app itself keeps about pupils: private notes, and the audit log of who looked at
which child and what they changed. Notes are never sent anywhere: they are not in any
service's data, so no message to a family can carry them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from staff.access import User
from staff.models import audit_log, notes

MAX_NOTE = 2000


class Views:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, user: User, action: str, school_urn: str, pupil_id: str,
                     now: dt.datetime, detail: str | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(audit_log).values(
                at=now, user_id=user.id, user_name=user.name, role=user.role.value,
                action=action, school_urn=school_urn, pupil_id=pupil_id,
                detail=None if detail is None else detail[:500]))

    async def audit(self, school_urn: str, limit: int = 500) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(audit_log).where(audit_log.c.school_urn == school_urn)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit))
            return [dict(row._mapping) for row in rows]

    async def add_note(self, user: User, school_urn: str, pupil_id: str, body: str,
                       now: dt.datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(notes).values(
                school_urn=school_urn, pupil_id=pupil_id, author_id=user.id,
                author_name=user.name, body=body, created_at=now))

    async def notes(self, school_urn: str, pupil_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(notes).where(notes.c.school_urn == school_urn,
                                    notes.c.pupil_id == pupil_id).order_by(notes.c.id))
            return [dict(row._mapping) for row in rows]
