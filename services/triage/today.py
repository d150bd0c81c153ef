"""`GET /api/v1/schools/{urn}/absences`: the attendance officer's "Today" screen — every pupil
with an unexplained absence (`N`) on a date, and, once a session's registers have closed, every
pupil on roll with no mark for it; with what triage has done about each (the day's scheduled
actions and those of the episode the day belongs to), replies, and open tasks.

A fixed handful of queries whatever the school's size (the roster, the day's marks, the
absent pupils' recent marks, actions, replies, tasks), never one per pupil: a 1,500-pupil
school's screen is one page load."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Annotated, Any

from broker_messages.codes import UNEXPLAINED
from broker_messages.events import EARLIEST_DATE
from fastapi import APIRouter, HTTPException, Path, Query
from servicekit.clock import at_local_time, local_date
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.deps import ClockDep, EngineDep, SchoolsDep, TimelineReader
from triage.models import marks, pupils, replies, scheduled_actions, tasks
from triage.rules import episodes
from triage.rules.marks import registers_closed_at
from triage.rules.unexplained_not_recoded import SESSIONS
from triage.schools import SchoolContext

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])

# Nothing in a school's document or policy says when the afternoon registers close, so the
# screen treats a PM mark as missing only from 14:00 school-local time.
PM_REGISTERS_CLOSE = dt.time(14, 0)
# Dates a register could be about (a far-off one overflows a time zone's arithmetic).
LATEST_DATE = dt.date(2999, 12, 31)

_ON_ROLL_THAT_DAY = select(pupils.c.pupil_id, pupils.c.record).where(
    pupils.c.school_urn == bindparam("urn"),
    or_(pupils.c.on_roll.is_(True), pupils.c.removed_on > bindparam("day")))
_DAY_MARKS = select(marks.c.pupil_id, marks.c.session, marks.c.code).where(
    marks.c.school_urn == bindparam("urn"), marks.c.date == bindparam("day"))
_RECENT_MARKS = select(marks.c.pupil_id, marks.c.date, marks.c.session, marks.c.code).where(
    marks.c.school_urn == bindparam("urn"), marks.c.date.between(bindparam("since"),
                                                                 bindparam("day")),
    marks.c.pupil_id.in_(bindparam("pupil_ids", expanding=True)))
_ACTIONS = select(scheduled_actions.c.pupil_id, scheduled_actions.c.rule,
                  scheduled_actions.c.status, scheduled_actions.c.due_at,
                  scheduled_actions.c.reason, scheduled_actions.c.request_id,
                  scheduled_actions.c.date, scheduled_actions.c.episode_start).where(
    scheduled_actions.c.school_urn == bindparam("urn"),
    or_(scheduled_actions.c.date == bindparam("day"),
        scheduled_actions.c.episode_start.between(bindparam("since"), bindparam("day"))),
).order_by(scheduled_actions.c.id)
_REPLIES = select(replies.c.pupil_id, replies.c.reply_id, replies.c.contact_ref,
                  replies.c.received_at).where(
    replies.c.school_urn == bindparam("urn"), replies.c.received_at >= bindparam("from_")
).order_by(replies.c.received_at)
_OPEN_TASKS = select(tasks.c.pupil_id, tasks.c.id, tasks.c.kind, tasks.c.due_at).where(
    and_(tasks.c.school_urn == bindparam("urn"), tasks.c.status == "open")).order_by(tasks.c.id)


def registers_closed(day: dt.date, context: SchoolContext, now: dt.datetime) -> dict[str, bool]:
    """Per session: have its registers closed, so a missing mark is a pupil unaccounted for?
    AM at the time the first-day rule waits for; PM at `PM_REGISTERS_CLOSE`."""
    return {"AM": now >= registers_closed_at(day, context.policy, context.tz),
            "PM": now >= at_local_time(day, PM_REGISTERS_CLOSE, context.tz)}


@router.get("/schools/{urn}/absences")
async def absences(
    urn: Annotated[str, Path(pattern=r"^[0-9]{6,8}$")],
    engine: EngineDep, clock: ClockDep, cache: SchoolsDep, caller: TimelineReader,
    date: Annotated[dt.date, Query(ge=EARLIEST_DATE, le=LATEST_DATE)] | None = None,
) -> dict[str, Any]:
    """`date`: a school-local date, today's by default."""
    ensure_school(caller, urn)
    now = clock.now()
    async with engine.connect() as conn:
        context = (await cache.load(conn, [urn])).get(urn)
        if context is None:
            raise HTTPException(404, "no such school")
        day = date or local_date(now, context.tz)
        school_day = context.calendar.is_school_day(day)
        closed = registers_closed(day, context, now)
        rows = await _pupil_rows(conn, context, day, now, school_day, closed)
    return {"urn": urn, "school_name": context.name, "date": day, "school_day": school_day,
            "sessions": {s: {"registers_closed": closed[s]} for s in SESSIONS},
            "pupils": rows}


async def _pupil_rows(conn: AsyncConnection, context: SchoolContext, day: dt.date,
                      now: dt.datetime, school_day: bool,
                      closed: dict[str, bool]) -> list[dict[str, Any]]:
    urn = context.urn
    roster = dict((await conn.execute(_ON_ROLL_THAT_DAY, {"urn": urn, "day": day})).all())
    day_codes: dict[str, dict[str, str]] = defaultdict(dict)
    for pupil_id, session, code in await conn.execute(_DAY_MARKS, {"urn": urn, "day": day}):
        day_codes[pupil_id][session] = code
    listed = [
        (pupil_id, session, code)
        for pupil_id in roster for session in SESSIONS
        if (code := day_codes[pupil_id].get(session)) == UNEXPLAINED
        or (code is None and school_day and closed[session])
    ]
    if not listed:
        return []
    policy = context.policy
    since = context.calendar.school_days_back(
        day, max(policy.day3_home_visit.day, policy.continuous_absence_days) + 2)
    episode_starts = await _episode_starts(
        conn, context, day, since, sorted({p for p, _, code in listed if code is not None}))
    params = {"urn": urn, "day": day, "since": since}
    actions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in await conn.execute(_ACTIONS, params):
        if row.date == day or (row.episode_start is not None
                               and row.episode_start == episode_starts.get(row.pupil_id)):
            actions[row.pupil_id].append({"rule": row.rule, "status": row.status,
                                          "due_at": row.due_at, "reason": row.reason,
                                          "request_id": row.request_id})
    replied: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for reply in await conn.execute(_REPLIES, {"urn": urn, "from_": at_local_time(
            day, dt.time(0), context.tz)}):
        replied[reply.pupil_id].append({"reply_id": reply.reply_id,
                                        "contact_ref": reply.contact_ref,
                                        "received_at": reply.received_at})
    open_tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task in await conn.execute(_OPEN_TASKS, {"urn": urn}):
        open_tasks[task.pupil_id].append({"id": task.id, "kind": task.kind,
                                          "due_at": task.due_at})
    rows = []
    for pupil_id, session, code in listed:
        pupil = context.pupil(roster[pupil_id])
        rows.append({
            "pupil_id": pupil_id, "given_name": pupil.given_name,
            "family_name": pupil.family_name, "year_group": pupil.year_group,
            "session": session, "code": code, "looked_after": pupil.looked_after,
            "social_worker": pupil.social_worker is not None,
            "contacts_allowed": sum(1 for c in pupil.contacts
                                    if not c.no_contact and (c.phone or c.email)),
            "actions": actions[pupil_id], "replies": replied[pupil_id],
            "open_tasks": open_tasks[pupil_id],
        })
    return sorted(rows, key=lambda r: (r["session"], r["family_name"], r["given_name"],
                                       r["pupil_id"]))


async def _episode_starts(conn: AsyncConnection, context: SchoolContext, day: dt.date,
                          since: dt.date, pupil_ids: list[str]) -> dict[str, dt.date]:
    """The first day of the absence episode `day` belongs to, for each absent pupil, looking
    back as far as the evaluator does (an older start is not found, and only the actions
    dated `day` are shown for that pupil)."""
    if not pupil_ids:
        return {}
    recent: dict[str, dict[dt.date, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for pupil_id, when, session, code in await conn.execute(
            _RECENT_MARKS, {"urn": context.urn, "since": since, "day": day,
                            "pupil_ids": pupil_ids}):
        recent[pupil_id][when][session] = code
    starts = {}
    for pupil_id in pupil_ids:
        episode = episodes.episode_containing(day, recent[pupil_id], context.calendar, since)
        if episode is not None:
            starts[pupil_id] = episode.start
    return starts
