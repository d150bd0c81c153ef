"""docs/rules.md "The rules" `attendance_update`: a periodic message to parents who opted in with the rate
this term (The example school policy "report to you … attendance and punctuality rate")."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from servicekit.clock import at_local_time, local_date

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import ATTENDANCE_UPDATE, key

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def attendance_update_period(now: dt.datetime, calendar: SchoolCalendar, policy: Policy,
                             tz: ZoneInfo) -> tuple[str, dt.date, dt.datetime] | None:
    """The period whose update is due by `now` (ISO week, e.g. "2026-W48"), the day it is
    about and when it is due; None before the weekly time or in a week without school."""
    today = local_date(now, tz)
    monday = calendar.school_week_of(today)
    day = monday + dt.timedelta(days=WEEKDAYS.index(policy.attendance_update.weekday))
    due_at = at_local_time(day, policy.attendance_update.time, tz)
    if now < due_at or not calendar.school_days_in(monday, monday + dt.timedelta(days=4)):
        return None
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}", day, due_at


def attendance_update_key(school_urn: str, pupil_id: str, period: str) -> str:
    # docs/rules.md "The rules": dedup key "pupil + period".
    return key(ATTENDANCE_UPDATE, school_urn, pupil_id, period)


def term_containing(day: dt.date, calendar: SchoolCalendar) -> tuple[dt.date, dt.date] | None:
    for term in calendar.terms:
        if term.start <= day <= term.end:
            return term.start, term.end
    return None
