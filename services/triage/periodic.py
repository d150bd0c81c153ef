"""Periodic rules, planned by the scheduler's loop: the weekly `attendance_update`
(docs/rules.md "attendance_update"; policy `attendance_update.weekday`/`time`) and the daily
check for `N` marks left uncorrected (docs/rules.md "unexplained_not_recoded"). Each school's
period is planned once (`periodic_runs`); what it finds becomes ordinary scheduled actions,
settled (and re-checked) by the scheduler like any other."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from broker_messages.codes import UNEXPLAINED
from broker_messages.contact import ContactRequest
from servicekit.clock import local_date
from servicekit.database import dialect_insert
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import decisions as decision_store
from triage.decisions import Outcome
from triage.models import marks, parked_events, periodic_runs, pupils, schools
from triage.rules import attendance_update, parked_marks_expiring, unexplained_not_recoded
from triage.rules.marks import registers_closed_at
from triage.schools import SchoolContext, SchoolContextCache

log = logging.getLogger(__name__)


async def all_schools(conn: AsyncConnection,
                      cache: SchoolContextCache) -> dict[str, SchoolContext]:
    """Every school's parsed context, read once per pass of the scheduler's loop."""
    urns = (await conn.execute(select(schools.c.urn))).scalars().all()
    return await cache.load(conn, urns) if urns else {}


async def _claim(conn: AsyncConnection, urn: str, rule: str, period: str,
                 now: dt.datetime) -> bool:
    """Take a school's period of a periodic rule; False if it was already taken (planned
    before, or by another replica right now)."""
    claimed = await conn.execute(dialect_insert(conn.engine)(periodic_runs).values(
        school_urn=urn, rule=rule, period=period, created_at=now,
    ).on_conflict_do_nothing().returning(periodic_runs.c.period))
    return claimed.first() is not None


async def plan_attendance_updates(conn: AsyncConnection, contexts: dict[str, SchoolContext],
                                  now: dt.datetime) -> int:
    if not contexts:
        return 0
    rule = attendance_update.ID
    done = set((await conn.execute(
        select(periodic_runs.c.school_urn, periodic_runs.c.period)
        .where(periodic_runs.c.rule == rule)
    )).all())
    planned = 0
    for urn, context in sorted(contexts.items()):
        due = attendance_update.period_due(now, context.calendar, context.policy, context.tz)
        if due is None or (urn, due[0]) in done:
            continue
        period, day, due_at = due
        if not await _claim(conn, urn, rule, period, now):
            continue  # another replica planned it
        rows = (await conn.execute(
            select(pupils.c.record)
            .where(pupils.c.school_urn == urn, pupils.c.on_roll.is_(True))
        )).scalars().all()
        wanted = [pupil for record in rows
                  if attendance_update.wants_update(pupil := context.pupil(record),
                                                    context.policy)]
        await decision_store.schedule_new(conn, [
            (attendance_update.decide(urn, pupil, period, due_at), urn, pupil.id, day)
            for pupil in wanted], now)
        planned += len(wanted)
        log.info("triage.attendance_update.planned school_urn=%s period=%s pupils=%d",
                 urn, period, len(wanted))
    return planned


async def plan_unexplained_checks(conn: AsyncConnection, contexts: dict[str, SchoolContext],
                                  now: dt.datetime) -> int:
    """Once a school day per school, after registers close: every pupil on roll with an `N`
    still standing from `recode_within_days` school days ago gets a check, due now."""
    rule = unexplained_not_recoded.ID
    due = {urn: dates for urn, context in sorted(contexts.items())
           if (dates := unexplained_not_recoded.days_to_check(now, context.calendar,
                                                              context.policy, context.tz))}
    if not due:
        return 0
    # Read first: the scheduler's loop runs every few seconds, and writes only for news.
    done = set((await conn.execute(
        select(periodic_runs.c.school_urn, periodic_runs.c.period)
        .where(periodic_runs.c.rule == rule,
               periodic_runs.c.period.in_({dates[1].isoformat() for dates in due.values()}))
    )).all())
    planned = 0
    for urn, dates in due.items():
        if (urn, dates[1].isoformat()) in done:
            continue
        if not await _claim(conn, urn, rule, dates[1].isoformat(), now):
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
        policy = contexts[urn].policy
        planned += await decision_store.schedule_new(conn, [
            (unexplained_not_recoded.decide(urn, pupil_id, day, session, policy, now), urn,
             pupil_id, day)
            for (pupil_id, day), session in first_sessions.items()], now)
        log.info("triage.unexplained_not_recoded.planned school_urn=%s pupils=%d", urn,
                 len(first_sessions))
    return planned


async def parked_warnings(conn: AsyncConnection, contexts: dict[str, SchoolContext],
                          now: dt.datetime, parked_days: int,
                          warn_days: int) -> list[ContactRequest]:
    """docs/rules.md "parked_marks_expiring": once a school day per school, after registers
    close, the officer hears of marks parked for pupils not on the roster that are within
    `warn_days` of being discarded. Returns the alerts to request."""
    rule = parked_marks_expiring.ID
    today = {urn: day for urn, context in contexts.items()
             if context.calendar.is_school_day(day := local_date(now, context.tz))
             and now >= registers_closed_at(day, context.policy, context.tz)}
    if not today:
        return []
    # Read first: the scheduler's loop runs every few seconds, and writes only for news.
    done = set((await conn.execute(
        select(periodic_runs.c.school_urn, periodic_runs.c.period)
        .where(periodic_runs.c.rule == rule,
               periodic_runs.c.period.in_({day.isoformat() for day in today.values()}))
    )).all())
    due = sorted(urn for urn, day in today.items() if (urn, day.isoformat()) not in done)
    if not due:
        return []
    before = parked_marks_expiring.warn_if_parked_before(now, parked_days, warn_days)
    parked: dict[str, list[tuple[str, dt.datetime]]] = defaultdict(list)
    for urn, pupil_id, parked_at in (await conn.execute(
            select(parked_events.c.school_urn, parked_events.c.pupil_id,
                   parked_events.c.parked_at)
            .where(parked_events.c.school_urn.in_(due), parked_events.c.parked_at < before)
            .order_by(parked_events.c.parked_at))).all():
        parked[urn].append((pupil_id, parked_at))
    requests = []
    for urn, found in sorted(parked.items()):
        context, day = contexts[urn], today[urn]
        if not await _claim(conn, urn, rule, day.isoformat(), now):
            continue  # already told today (or another replica is telling)
        details = parked_marks_expiring.details(found, parked_days, context.tz)
        dedup = parked_marks_expiring.dedup_key(urn, day)
        officers = context.staff_recipients("attendance_officer")
        if officers:
            requests.append(ContactRequest(
                request_id=dedup, rule=rule, school=context.school, date=day, pupils=(),
                recipients=tuple(officers), safeguarding=True, details=details,
                requested_at=now))
        await decision_store.record(
            conn, rule=rule, school_urn=urn, pupil_id="", dedup_key=dedup,
            outcome=Outcome.REQUESTED if officers else Outcome.SUPPRESSED,
            reason=(f"{details['count']} parked marks within {warn_days} days of being "
                    "discarded" + ("" if officers else ": the school has no attendance officer")),
            inputs=details, now=now)
        log.info("triage.parked_marks_expiring.planned school_urn=%s marks=%d", urn,
                 details["count"])
    return requests
