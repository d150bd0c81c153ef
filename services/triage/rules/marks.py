"""What a day's marks say, as several rules read them: unexplained, stale, provisional until
the registers close."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from broker_messages.codes import UNEXPLAINED
from servicekit.clock import at_local_time, local_date

from triage.calendar import SchoolCalendar
from triage.policy import Policy


def is_unexplained(codes: Mapping[str, str]) -> bool:
    # docs/rules.md "Register codes": "Unexplained means `N` and nothing else".
    return UNEXPLAINED in codes.values()


def describe(codes: Mapping[str, str]) -> str:
    return ", ".join(f"{session} {code}" for session, code in sorted(codes.items()))


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
