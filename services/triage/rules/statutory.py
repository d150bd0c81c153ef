"""Rules for pupils whom others must hear about: social workers, the Virtual School, the local
authority (docs/rules.md "The rules" `social_worker_unexplained`, `looked_after_unexplained`,
`register_removal`, `ehcp_absence_15_days`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rates import Counts
from triage.rules.decisions import (
    EHCP_ABSENCE_15_DAYS,
    LOOKED_AFTER_UNEXPLAINED,
    REGISTER_REMOVAL,
    SOCIAL_WORKER_UNEXPLAINED,
    Decision,
    Schedule,
    Suppress,
    Withdraw,
    key,
)
from triage.rules.first_day import describe, is_stale, is_unexplained, registers_closed_at


def unexplained_absence_alerts(
    *,
    school_urn: str,
    pupil_id: str,
    record: Mapping[str, Any],
    day: dt.date,
    codes: Mapping[str, str],
    calendar: SchoolCalendar,
    policy: Policy,
    now: dt.datetime,
    tz: ZoneInfo,
) -> list[Decision]:
    """The DfE summary of responsibilities: "inform the pupil's social worker if there are any unexplained absences";
    for a looked-after child the Virtual School too. One alert per school day (the first N
    session of the day), sent once registers have closed so a parent's 9 o'clock call to the
    office can still explain it."""
    rules = []
    if record.get("social_worker"):
        rules.append(SOCIAL_WORKER_UNEXPLAINED)
    if record.get("looked_after"):
        rules.append(LOOKED_AFTER_UNEXPLAINED)
    decisions: list[Decision] = []
    inputs = {"date": day.isoformat(), "codes": dict(codes)}
    for rule in rules:
        dedup_key = key(rule, school_urn, pupil_id, day)  # docs/rules.md "The rules": pupil + date
        if not is_unexplained(codes):
            decisions.append(Withdraw(rule, dedup_key,
                                      f"re-coded {describe(codes)}: no longer unexplained", inputs))
        elif not calendar.is_school_day(day):
            decisions.append(Suppress(rule, dedup_key, "mark is for a day that is not a school day",
                                      inputs))
        elif is_stale(day, now, calendar, policy, tz):
            decisions.append(Suppress(
                rule, dedup_key,
                f"stale mark: more than {policy.max_action_age_days} school day(s) old", inputs))
        else:
            due_at = max(registers_closed_at(day, policy, tz), now)
            decisions.append(Schedule(rule, dedup_key, due_at,
                                      "unexplained absence (N) of a pupil "
                                      + ("with a social worker" if rule == SOCIAL_WORKER_UNEXPLAINED
                                         else "who is looked after"), inputs))
    return decisions


def unexplained_alert_still_due(codes: Mapping[str, str], on_roll: bool) -> str | None:
    if not on_roll:
        return "pupil is no longer on roll"
    if not is_unexplained(codes):
        return f"re-coded {describe(codes)} before the alert was due"
    return None


def register_removal(*, school_urn: str, pupil_id: str, removed_on: dt.date, ground: str | None,
                     now: dt.datetime) -> Decision:
    """The DfE summary of responsibilities: inform the social worker "…and if their name is to be deleted from the
    register"; the local authority is told of every removal (Regulations 2024)."""
    dedup_key = key(REGISTER_REMOVAL, school_urn, pupil_id, removed_on)  # pupil + removal
    # The ground is office free text: kept in the decision log, never put in a message.
    return Schedule(REGISTER_REMOVAL, dedup_key, now, "pupil removed from the register",
                    {"removed_on": removed_on.isoformat(), "ground": ground or ""})


def ehcp_absence(*, school_urn: str, pupil_id: str, record: Mapping[str, Any], counts: Counts,
                 year_start: dt.date, policy: Policy, now: dt.datetime) -> Decision | None:
    """The DfE guide for parents: "if your child has an Education, Health and Care plan, and is out of school for
    more than 15 days … inform the local council". Days are counted as two sessions each."""
    if not record.get("ehcp"):
        return None
    days_absent = counts.absent / 2
    if days_absent <= policy.ehcp_absence_days:
        return None
    dedup_key = key(EHCP_ABSENCE_15_DAYS, school_urn, pupil_id, year_start.year)  # pupil + year
    return Schedule(EHCP_ABSENCE_15_DAYS, dedup_key, now,
                    f"pupil with an EHCP absent for {days_absent:g} school days this year "
                    f"(more than {policy.ehcp_absence_days})",
                    {"absent_sessions": counts.absent, "year_start": year_start.isoformat()})
