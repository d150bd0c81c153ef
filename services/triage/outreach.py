"""Who hears about a due action, after re-checking the facts it rests on (docs/rules.md "The rules"
"re-check the mark at send time"). One function per rule, reading the few rows it needs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from broker_messages.contact import Channel, Recipient
from servicekit.clock import at_local_time
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import counters, history, tasks
from triage.rates import Counts, school_year_start
from triage.rules import decisions as r
from triage.rules import (
    episodes,
    first_day,
    recipients,
    registers,
    statutory,
    thresholds,
    updates,
)
from triage.schools import SchoolContext

# docs/rules.md "The rules" default channels for the parent's part of each family-facing rule.
FAMILY_CHANNELS: dict[str, tuple[Channel, ...]] = {
    r.ATTENDANCE_STAGE1: ("sms",),
    r.PERSISTENT_ABSENCE: ("sms", "email"),
    r.ATTENDANCE_UPDATE: ("sms",),
}


@dataclass
class Outreach:
    """What one due action asks for; `cancel` says why it must not go at all."""

    cancel: str | None = None
    family: list[Recipient] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    professionals: list[Recipient] = field(default_factory=list)
    details: dict[str, str | int | float] = field(default_factory=dict)
    episode_start: dt.date | None = None


def _percent(rate: float) -> float:
    return round(rate * 100, 1)


def rate_details(counts: Counts) -> dict[str, str | int | float]:
    # A rate is not a code, reason or comment: parents are told it (the example school policy).
    return {"attendance_percent": _percent(counts.attendance_rate),
            "absence_percent": _percent(counts.absence_rate),
            "possible_sessions": counts.possible}


async def plan(conn: AsyncConnection, action: Row, context: SchoolContext,
               record: dict[str, Any], on_roll: bool, now: dt.datetime) -> Outreach:
    rule = action.rule
    if rule != r.REGISTER_REMOVAL and not on_roll:
        return Outreach(cancel="pupil is no longer on roll")
    planner = _PLANNERS[rule]
    return await planner(conn, action, context, record, now)


async def _first_day(conn: AsyncConnection, action: Row, context: SchoolContext,
                     record: dict[str, Any], now: dt.datetime) -> Outreach:
    codes = await _codes_on(conn, context, action)
    reason = first_day.first_day_contact_still_due(
        day=action.date, codes=codes, on_roll=True, calendar=context.calendar,
        policy=context.policy, now=now, tz=context.tz)
    if reason:
        return Outreach(cancel=reason)
    channels = context.policy.first_day_contact.channels
    if context.policy.first_day_contact.voice:
        channels = (*channels, "voice")
    family, skipped = recipients.family_recipients(action.pupil_id, record.get("contacts", []),
                                                  channels)
    return Outreach(family=family, skipped=skipped, episode_start=action.date)


async def _day3(conn: AsyncConnection, action: Row, context: SchoolContext,
                record: dict[str, Any], now: dt.datetime) -> Outreach:
    calendar, start = context.calendar, action.episode_start
    since = calendar.school_days_back(start, 10)
    marks = (await history.marks_between(conn, context.urn, [action.pupil_id], since,
                                         action.date))[action.pupil_id]
    episode = episodes.episode_containing(start, marks, calendar, since)
    replied = await history.replied_since(conn, context.urn, action.pupil_id,
                                          at_local_time(start, dt.time(0), context.tz))
    reason = episodes.day3_home_visit_still_due(
        episode=episode, marks=marks, episode_start=start, policy=context.policy,
        replied=replied, on_roll=True)
    if reason:
        return Outreach(cancel=reason)
    await tasks.open_task(conn, kind=tasks.HOME_VISIT, school_urn=context.urn,
                          pupil_id=action.pupil_id, day=start, now=now,
                          detail=f"nobody has heard from the family by day "
                                 f"{context.policy.day3_home_visit.day}: visit the home")
    return Outreach(professionals=[*context.staff_recipients("attendance_officer"),
                                   *context.staff_recipients("dsl")],
                    details={"visit_day": action.date.isoformat()}, episode_start=start)


async def _unexplained(conn: AsyncConnection, action: Row, context: SchoolContext,
                       record: dict[str, Any], now: dt.datetime) -> Outreach:
    reason = statutory.unexplained_alert_still_due(await _codes_on(conn, context, action), True)
    if reason:
        return Outreach(cancel=reason)
    if action.rule == r.SOCIAL_WORKER_UNEXPLAINED:
        return Outreach(professionals=recipients.social_worker(action.pupil_id, record))
    return Outreach(professionals=recipients.local_authority(context.urn, context.document,
                                                             "virtual_school"))


async def _removal(conn: AsyncConnection, action: Row, context: SchoolContext,
                   record: dict[str, Any], now: dt.datetime) -> Outreach:
    return Outreach(professionals=[
        *recipients.social_worker(action.pupil_id, record),
        *recipients.local_authority(context.urn, context.document, "local_authority"),
    ])


async def _threshold(conn: AsyncConnection, action: Row, context: SchoolContext,
                     record: dict[str, Any], now: dt.datetime) -> Outreach:
    year = school_year_start(action.date)
    counts = (await counters.load(conn, [(context.urn, action.pupil_id, year)])).popitem()[1]
    threshold = next(t for t in thresholds.thresholds(context.policy) if t.rule == action.rule)
    reason = thresholds.threshold_still_crossed(threshold, counts)
    if reason:
        return Outreach(cancel=reason)
    staff = context.staff_recipients
    la = recipients.local_authority(context.urn, context.document, "local_authority")
    outreach = Outreach(details=rate_details(counts))
    if action.rule in FAMILY_CHANNELS:
        outreach.family, outreach.skipped = recipients.family_recipients(
            action.pupil_id, record.get("contacts", []), FAMILY_CHANNELS[action.rule])
        outreach.professionals = staff("attendance_officer")
        if action.rule == r.PERSISTENT_ABSENCE and context.policy.persistent_absence.inform_la:
            # "All PA cases are also automatically made known to the County Attendance team"
            # (the example school policy): at 10%, whether or not attendance is below 90% yet.
            outreach.professionals = [*outreach.professionals, *la]
    elif action.rule == r.LA_REFERRAL:
        outreach.professionals = la
    else:  # severe absence: "all services should make this group the top priority"
        outreach.professionals = [*staff("attendance_officer"), *staff("dsl"), *la,
                                  *recipients.social_worker(action.pupil_id, record)]
    return outreach


async def _staff_only(conn: AsyncConnection, action: Row, context: SchoolContext,
                      record: dict[str, Any], now: dt.datetime) -> Outreach:
    if action.rule == r.PENALTY_NOTICE_THRESHOLD:
        return Outreach(professionals=[*context.staff_recipients("attendance_officer"),
                                       *context.staff_recipients("headteacher")])
    team = "send_team" if action.rule == r.EHCP_ABSENCE_15_DAYS else "local_authority"
    return Outreach(professionals=recipients.local_authority(context.urn, context.document, team),
                    episode_start=action.episode_start)


async def _attendance_update(conn: AsyncConnection, action: Row, context: SchoolContext,
                             record: dict[str, Any], now: dt.datetime) -> Outreach:
    term = updates.term_containing(action.date, context.calendar)
    if term is None:
        return Outreach(cancel="not in term time")
    counts = await counters.term_counts(conn, context.urn, action.pupil_id, term[0], action.date)
    if counts.possible == 0:
        return Outreach(cancel="no sessions recorded this term yet")
    family, skipped = recipients.family_recipients(
        action.pupil_id, record.get("contacts", []), FAMILY_CHANNELS[r.ATTENDANCE_UPDATE],
        opted_in_only=context.policy.attendance_update.opt_in)
    return Outreach(family=family, skipped=skipped, details=rate_details(counts))


async def _not_recoded(conn: AsyncConnection, action: Row, context: SchoolContext,
                       record: dict[str, Any], now: dt.datetime) -> Outreach:
    standing = registers.sessions_still_unexplained(await _codes_on(conn, context, action))
    if not standing:
        return Outreach(cancel="the register was corrected: no session is N any more")
    sessions = " and ".join(standing)
    await tasks.open_task(conn, kind=tasks.UNEXPLAINED_NOT_RECODED, school_urn=context.urn,
                          pupil_id=action.pupil_id, day=action.date, now=now,
                          detail=f"{sessions} of {action.date.isoformat()} still N after "
                                 f"{context.policy.recode_within_days} school days: correct "
                                 "the register")
    return Outreach(professionals=context.staff_recipients("attendance_officer"),
                    details={"sessions": sessions,
                             "recode_within_days": context.policy.recode_within_days},
                    episode_start=action.date)


async def _codes_on(conn: AsyncConnection, context: SchoolContext, action: Row) -> dict[str, str]:
    found = await history.marks_between(conn, context.urn, [action.pupil_id], action.date,
                                        action.date)
    return dict(found.get(action.pupil_id, {}).get(action.date, {}))


_PLANNERS = {
    r.FIRST_DAY_CONTACT: _first_day,
    r.DAY3_HOME_VISIT: _day3,
    r.SOCIAL_WORKER_UNEXPLAINED: _unexplained,
    r.LOOKED_AFTER_UNEXPLAINED: _unexplained,
    r.REGISTER_REMOVAL: _removal,
    r.ATTENDANCE_STAGE1: _threshold,
    r.PERSISTENT_ABSENCE: _threshold,
    r.LA_REFERRAL: _threshold,
    r.SEVERE_ABSENCE: _threshold,
    r.PENALTY_NOTICE_THRESHOLD: _staff_only,
    r.CONTINUOUS_ABSENCE_10_DAYS: _staff_only,
    r.EHCP_ABSENCE_15_DAYS: _staff_only,
    r.ATTENDANCE_UPDATE: _attendance_update,
    r.UNEXPLAINED_NOT_RECODED: _not_recoded,
}
