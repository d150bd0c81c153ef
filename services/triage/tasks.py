"""Staff tasks (home visits, unreachable families, uncorrected registers, escalations to the
safeguarding lead): the one module that writes the `tasks` table. A task is opened at most
once per kind, pupil and day. Rules say which tasks to open (`triage.rules.rule.TaskToOpen`,
whose kind is the rule's id, or "home_visit" for `day3_home_visit`); their callers open them
here, and staff take and close them through the API (`triage.api`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from servicekit.database import dialect_insert
from sqlalchemy import Row, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import tasks

# What a visit or call found (`POST /api/v1/tasks/{id}/complete`); a concern goes to the DSL.
Result = Literal["seen", "no_answer", "concern"]
DSL_ESCALATION = "dsl_escalation"


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


async def assign(conn: AsyncConnection, task_id: int, assignee: str, now: dt.datetime) -> bool:
    """Give an open task to a member of staff; False if it is no longer open."""
    moved = await conn.execute(
        update(tasks).where(tasks.c.id == task_id, tasks.c.status == "open")
        .values(assignee=assignee, updated_at=now))
    return bool(moved.rowcount)


async def complete(conn: AsyncConnection, task: Row[Any], outcome: str | None,
                   result: Result | None, now: dt.datetime) -> bool:
    """Close an open task with what was found (stored as "result: outcome"); False if it is
    no longer open. A concern opens the safeguarding lead's task for the same pupil and day,
    due at once, in the same transaction, so a concern is never closed without somebody asked
    to act on it."""
    said = ": ".join(part for part in (result, outcome) if part)
    moved = await conn.execute(
        update(tasks).where(tasks.c.id == task.id, tasks.c.status == "open")
        .values(status="done", outcome=said, updated_at=now))
    if not moved.rowcount:
        return False
    if result == "concern":
        await open_task(
            conn, kind=DSL_ESCALATION, school_urn=task.school_urn, pupil_id=task.pupil_id,
            day=task.episode_start, now=now,
            detail=f"Concern raised when closing task {task.id} ({task.kind}): the "
                   "safeguarding lead must review it")
    return True
