"""docs/rules.md "attendance_update": a weekly message with this term's rate to parents who
opted in (the example school policy: "report to you … attendance and punctuality rate").
Planned per school and week by `triage.periodic`; settled like any other action."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from servicekit.clock import at_local_time, local_date

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import Schedule, key
from triage.rules.recipients import family_recipients
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, Rule
from triage.rules.thresholds import rate_details
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "attendance_update"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def period_due(now: dt.datetime, calendar: SchoolCalendar, policy: Policy,
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


def dedup_key(school_urn: str, pupil_id: str, period: str) -> str:
    # docs/rules.md "attendance_update": dedup key "pupil + period".
    return key(ID, school_urn, pupil_id, period)


def wants_update(pupil: Pupil, policy: Policy) -> bool:
    """Somebody in the family may be contacted and (when the school asks for it) opted in."""
    opt_in = policy.attendance_update.opt_in
    return any(not c.no_contact and (c.attendance_updates or not opt_in) for c in pupil.contacts)


def decide(school_urn: str, pupil: Pupil, period: str, due_at: dt.datetime) -> Schedule:
    return Schedule(ID, dedup_key(school_urn, pupil.id, period), due_at,
                    f"weekly attendance update for {period} to contacts who opted in",
                    {"period": period})


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    counts = facts.term_counts
    if counts is None:
        return Outreach(cancel="not in term time")
    if counts.possible == 0:
        return Outreach(cancel="no sessions recorded this term yet")
    family, skipped = family_recipients(due.pupil_id, pupil.contacts, ("sms",),
                                        opted_in_only=school.policy.attendance_update.opt_in)
    return Outreach(family=family, skipped=skipped, details=rate_details(counts))


# Opt-in information, not a contact the school needs to make: nobody is told if it cannot go,
# and every carer who opted in hears (everyone with parental responsibility is entitled to it).
RULE = Rule(id=ID, plan=plan, needs=frozenset({Need.TERM_COUNTS}), family=True,
            every_contact=True)
