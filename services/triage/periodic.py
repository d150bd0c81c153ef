"""Periodic rules, planned by the scheduler's loop: the weekly `attendance_update`
(docs/rules.md "The rules"; policy `attendance_update.weekday`/`time`). Each school's period is planned once
(`periodic_runs`); each pupil's update is an ordinary scheduled action keyed pupil + period."""

from __future__ import annotations

import datetime as dt
import logging

from servicekit.database import dialect_insert
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import decisions, periodic_runs, pupils, scheduled_actions, schools
from triage.rules.decisions import ATTENDANCE_UPDATE
from triage.rules.updates import attendance_update_key, attendance_update_period
from triage.schools import SchoolContextCache

log = logging.getLogger(__name__)
_CHUNK = 400


async def plan_attendance_updates(conn: AsyncConnection, cache: SchoolContextCache,
                                  now: dt.datetime) -> int:
    urns = (await conn.execute(select(schools.c.urn))).scalars().all()
    if not urns:
        return 0
    contexts = await cache.load(conn, urns)
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
