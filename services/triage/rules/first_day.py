"""docs/rules.md "The rules" `first_day_contact`, and the facts several rules share (unexplained, stale)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from broker_messages.codes import UNEXPLAINED
from servicekit.clock import at_local_time, local_date

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import (
    FIRST_DAY_CONTACT,
    Decision,
    Schedule,
    Suppress,
    Withdraw,
    first_day_contact_key,
)


def is_unexplained(codes: Mapping[str, str]) -> bool:
    # docs/rules.md "Register codes": "Unexplained means code N (no reason yet)".
    return UNEXPLAINED in codes.values()


def is_stale(day: dt.date, now: dt.datetime, calendar: SchoolCalendar, policy: Policy,
             tz: ZoneInfo) -> bool:
    """docs/rules.md "Stale marks": older than `max_action_age_days` school days contact nobody."""
    today = local_date(now, tz)
    return calendar.school_days_between(day, today) > policy.max_action_age_days


def registers_closed_at(day: dt.date, policy: Policy, tz: ZoneInfo) -> dt.datetime:
    """`first_day_contact.not_before` (+ grace) on `day`: before it an N is still provisional
    (registers close at 09:15, the example school policy), so nobody is told about it earlier."""
    rule_policy = policy.first_day_contact
    return at_local_time(day, rule_policy.not_before, tz) + dt.timedelta(
        minutes=rule_policy.grace_minutes
    )


def describe(codes: Mapping[str, str]) -> str:
    return ", ".join(f"{session} {code}" for session, code in sorted(codes.items()))


def first_day_contact(
    *,
    school_urn: str,
    pupil_id: str,
    day: dt.date,
    codes: Mapping[str, str],
    previous_day_absent: bool,
    calendar: SchoolCalendar,
    policy: Policy,
    now: dt.datetime,
    tz: ZoneInfo,
) -> Decision | None:
    """The example school policy: "telephone or text you on the first day of absence if we have not heard
    from you". Decided when a mark arrives; `first_day_contact_still_due` re-checks at send time.
    """
    dedup_key = first_day_contact_key(school_urn, pupil_id, day)
    inputs = {"date": day.isoformat(), "codes": dict(codes)}
    if not is_unexplained(codes):
        return Withdraw(FIRST_DAY_CONTACT, dedup_key,
                        f"re-coded {describe(codes)}: no longer unexplained", inputs)
    if not calendar.is_school_day(day):
        return Suppress(FIRST_DAY_CONTACT, dedup_key, "mark is for a day that is not a school day",
                        inputs)
    if previous_day_absent:
        # The episode began on an earlier school day (the child has not been seen since), so
        # this is not its first day.
        return None
    if is_stale(day, now, calendar, policy, tz):
        return Suppress(
            FIRST_DAY_CONTACT, dedup_key,
            f"stale mark: more than {policy.max_action_age_days} school day(s) old", inputs,
        )
    due_at = registers_closed_at(day, policy, tz)
    return Schedule(
        FIRST_DAY_CONTACT, dedup_key, due_at,
        f"unexplained absence on the first day of an episode; contact at {due_at.isoformat()}",
        inputs, episode_start=day,
    )


def first_day_contact_still_due(
    *,
    day: dt.date,
    codes: Mapping[str, str],
    on_roll: bool,
    calendar: SchoolCalendar,
    policy: Policy,
    now: dt.datetime,
    tz: ZoneInfo,
) -> str | None:
    """The send-time re-check; returns why the contact must not go, or None if it must."""
    if not on_roll:
        return "pupil is no longer on roll"
    if not is_unexplained(codes):
        return f"re-coded {describe(codes)} before the contact was due"
    if is_stale(day, now, calendar, policy, tz):
        return "the contact is overdue by more than max_action_age_days: too late to send"
    return None
