"""Staff tasks (home visits, unreachable families, uncorrected registers): the one module that
writes the `tasks` table. A task is opened at most once per kind, pupil and day. Rules say
which tasks to open (`triage.rules.rule.TaskToOpen`, whose kind is the rule's id, or
"home_visit" for `day3_home_visit`); their callers open them here."""

from __future__ import annotations

import datetime as dt

from servicekit.database import dialect_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import tasks


async def open_task(conn: AsyncConnection, *, kind: str, school_urn: str, pupil_id: str,
                    day: dt.date, detail: str, now: dt.datetime,
                    due_at: dt.datetime | None = None) -> bool:
    """Open a task unless one of this kind is already there for the pupil and day; returns
    whether it was opened."""
    result = await conn.execute(dialect_insert(conn.engine)(tasks).values(
        kind=kind, school_urn=school_urn, pupil_id=pupil_id, episode_start=day, status="open",
        detail=detail, due_at=due_at or now, created_at=now, updated_at=now,
    ).on_conflict_do_nothing())
    return bool(result.rowcount)
