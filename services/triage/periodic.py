"""Periodic rules, planned by the scheduler's loop: the weekly `attendance_update`
(docs/rules.md "attendance_update"; policy `attendance_update.weekday`/`time`) and the daily
check for `N` marks left uncorrected (docs/rules.md "unexplained_not_recoded"). Each school's
period is planned once (`periodic_runs`); what it finds becomes ordinary scheduled actions,
settled (and re-checked) by the scheduler like any other."""

from __future__ import annotations

import datetime as dt
import logging

from broker_messages.codes import UNEXPLAINED
from servicekit.database import dialect_insert
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import decisions, marks, periodic_runs, pupils, scheduled_actions, schools
from triage.rules.decisions import ATTENDANCE_UPDATE, UNEXPLAINED_NOT_RECODED
from triage.rules.registers import days_to_check, not_recoded_key
from triage.rules.updates import attendance_update_key, attendance_update_period
from triage.schools import SchoolContext, SchoolContextCache

log = logging.getLogger(__name__)
_CHUNK = 400


async def all_schools(conn: AsyncConnection,
                      cache: SchoolContextCache) -> dict[str, SchoolContext]:
    """Every school's parsed context, read once per pass of the scheduler's loop."""
    urns = (await conn.execute(select(schools.c.urn))).scalars().all()
    return await cache.load(conn, urns) if urns else {}


async def plan_attendance_updates(conn: AsyncConnection, contexts: dict[str, SchoolContext],
                                  now: dt.datetime) -> int:
    if not contexts:
        return 0
    done = set((await conn.execute(
        select(periodic_runs.c.school_urn, periodic_runs.c.period)
        .where(periodic_runs.c.rule == ATTENDANCE_UPDATE)
    )).all())
    planned = 0
    insert = dialect_insert(conn.engine)
    for urn, context in sorted(contexts.items()):
        due = attendance_update_period(now, context.calendar, context.policy, context.tz)
        if due is None or (urn, due[0]) in done:
            continue
        period, day, due_at = due
        claimed = await conn.execute(insert(periodic_runs).values(
            school_urn=urn, rule=ATTENDANCE_UPDATE, period=period, created_at=now,
        ).on_conflict_do_nothing().returning(periodic_runs.c.period))
        if claimed.first() is None:
            continue  # another replica planned it
        opt_in = context.policy.attendance_update.opt_in
        rows = (await conn.execute(
            select(pupils.c.pupil_id, pupils.c.record)
            .where(pupils.c.school_urn == urn, pupils.c.on_roll.is_(True))
        )).all()
        wanted = [pupil_id for pupil_id, record in rows
                  if any(not c.get("no_contact") and (c.get("attendance_updates") or not opt_in)
                         for c in record.get("contacts", []))]
        reason = f"weekly attendance update for {period} to contacts who opted in"
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            await conn.execute(insert(scheduled_actions).values([
                {"dedup_key": attendance_update_key(urn, p, period), "rule": ATTENDANCE_UPDATE,
                 "school_urn": urn, "pupil_id": p, "date": day, "due_at": due_at,
                 "status": "pending", "reason": reason, "created_at": now, "updated_at": now}
                for p in chunk
            ]).on_conflict_do_nothing())
            await conn.execute(decisions.insert().values([
                {"rule": ATTENDANCE_UPDATE, "school_urn": urn, "pupil_id": p,
                 "dedup_key": attendance_update_key(urn, p, period), "outcome": "scheduled",
                 "reason": reason, "inputs": {"period": period}, "decided_at": now}
                for p in chunk
            ]))
        planned += len(wanted)
        log.info("triage.attendance_update.planned school_urn=%s period=%s pupils=%d",
                 urn, period, len(wanted))
    return planned


async def plan_unexplained_checks(conn: AsyncConnection, contexts: dict[str, SchoolContext],
                                  now: dt.datetime) -> int:
    """Once a school day per school, after registers close: every pupil on roll with an `N`
    still standing from `recode_within_days` school days ago gets a check, due now."""
    due = {urn: dates for urn, context in sorted(contexts.items())
           if (dates := days_to_check(now, context.calendar, context.policy, context.tz))}
    if not due:
        return 0
    # Read first: the scheduler's loop runs every few seconds, and writes only for news.
    done = set((await conn.execute(
        select(periodic_runs.c.school_urn, periodic_runs.c.period)
        .where(periodic_runs.c.rule == UNEXPLAINED_NOT_RECODED,
               periodic_runs.c.period.in_({dates[1].isoformat() for dates in due.values()}))
    )).all())
    planned = 0
    insert = dialect_insert(conn.engine)
    for urn, dates in due.items():
        if (urn, dates[1].isoformat()) in done:
            continue
        claimed = await conn.execute(insert(periodic_runs).values(
            school_urn=urn, rule=UNEXPLAINED_NOT_RECODED, period=dates[1].isoformat(),
            created_at=now,
        ).on_conflict_do_nothing().returning(periodic_runs.c.period))
        if claimed.first() is None:
            continue  # already checked (or another replica is checking)
        standing = (await conn.execute(
            select(marks.c.pupil_id, marks.c.date, marks.c.session)
            .join(pupils, (pupils.c.school_urn == marks.c.school_urn)
                  & (pupils.c.pupil_id == marks.c.pupil_id))
            .where(marks.c.school_urn == urn, marks.c.code == UNEXPLAINED,
                   marks.c.date.between(*dates), pupils.c.on_roll.is_(True))
            .order_by(marks.c.pupil_id, marks.c.date, marks.c.session)
        )).all()
        first_sessions: dict[tuple[str, dt.date], str] = {}
        for pupil_id, day, session in standing:
            first_sessions.setdefault((pupil_id, day), session)  # "AM" sorts before "PM"
        days = contexts[urn].policy.recode_within_days
        reason = f"N still standing {days} school days later: the register must be corrected"
        for (pupil_id, day), session in first_sessions.items():
            dedup_key = not_recoded_key(urn, pupil_id, day, session)
            stored = await conn.execute(insert(scheduled_actions).values(
                dedup_key=dedup_key, rule=UNEXPLAINED_NOT_RECODED, school_urn=urn,
                pupil_id=pupil_id, date=day, episode_start=day, due_at=now, status="pending",
                reason=reason, created_at=now, updated_at=now,
            ).on_conflict_do_nothing().returning(scheduled_actions.c.id))
            if stored.first() is None:
                continue
            await conn.execute(decisions.insert().values(
                rule=UNEXPLAINED_NOT_RECODED, school_urn=urn, pupil_id=pupil_id,
                dedup_key=dedup_key, outcome="scheduled", reason=reason,
                inputs={"date": day.isoformat(), "session": session}, decided_at=now))
            planned += 1
        log.info("triage.unexplained_not_recoded.planned school_urn=%s pupils=%d", urn,
                 len(first_sessions))
    return planned
