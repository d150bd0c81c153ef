"""docs/rules.md "unexplained_not_recoded": the Registration Regulations expect an `N` to be
replaced with the right code within 5 school days. An `N` still standing then is flagged to
the attendance officer, once per pupil and day (keyed by the day's first session still `N`),
so a register left uncorrected never goes unnoticed.

Checked once a school day per school, when registers have closed (`triage.periodic`), rather
than scheduled for every mark: a busy morning's marks pay nothing for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from broker_messages.codes import UNEXPLAINED
from servicekit.clock import local_date

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import Schedule, key
from triage.rules.marks import registers_closed_at
from triage.rules.professional import staff_details
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, Rule, TaskToOpen
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "unexplained_not_recoded"
SESSIONS = ("AM", "PM")


def dedup_key(school_urn: str, pupil_id: str, day: dt.date, session: str) -> str:
    # docs/rules.md "unexplained_not_recoded": dedup key "pupil + date + session".
    return key(ID, school_urn, pupil_id, day, session)


def sessions_still_unexplained(codes: Mapping[str, str]) -> list[str]:
    return [session for session in SESSIONS if codes.get(session) == UNEXPLAINED]


def days_to_check(now: dt.datetime, calendar: SchoolCalendar, policy: Policy,
                  tz: ZoneInfo) -> tuple[dt.date, dt.date] | None:
    """The mark dates whose `N` is overdue today, oldest and newest; None before registers
    close or on a day that is not a school day. The newest is `recode_within_days` school days
    back (a Monday `N` is checked the next Monday); the range reaches `max_action_age_days`
    school days further back, so a day the service was down is still checked."""
    today = local_date(now, tz)
    if not calendar.is_school_day(today) or now < registers_closed_at(today, policy, tz):
        return None
    newest = calendar.school_days_back(today, policy.recode_within_days)
    if calendar.nth_school_day(newest, policy.recode_within_days + 1) != today:
        return None  # the calendar does not reach back far enough yet
    return calendar.school_days_back(newest, policy.max_action_age_days), newest


def overdue(day: dt.date, now: dt.datetime, calendar: SchoolCalendar, policy: Policy,
            tz: ZoneInfo) -> bool:
    """Whether an `N` on school day `day`, still standing, is past its limit by `now`: the
    check `days_to_check` makes for it has come (registers have closed on the school day
    `recode_within_days` school days later). The staff lists count these."""
    check_day = calendar.nth_school_day(day, policy.recode_within_days + 1)
    return check_day is not None and now >= registers_closed_at(check_day, policy, tz)


def decide(school_urn: str, pupil_id: str, day: dt.date, session: str, policy: Policy,
           now: dt.datetime) -> Schedule:
    """`session`: the day's first session still `N`."""
    return Schedule(
        ID, dedup_key(school_urn, pupil_id, day, session), now,
        f"N still standing {policy.recode_within_days} school days later: the register must "
        "be corrected", {"date": day.isoformat(), "session": session}, episode_start=day)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    standing = sessions_still_unexplained(facts.codes)
    if not standing:
        return Outreach(cancel="the register was corrected: no session is N any more")
    sessions = " and ".join(standing)
    days = school.policy.recode_within_days
    return Outreach(
        professionals=school.staff_recipients("attendance_officer"),
        details={"sessions": sessions, "recode_within_days": days},
        staff_details={"contact_attempts": facts.family_contacts_requested,
                       "family_replied": int(facts.replied),
                       **staff_details(ID, due.date, school)},
        episode_start=due.date,
        tasks=[TaskToOpen(ID, due.date, f"{sessions} of {due.date.isoformat()} still N after "
                                        f"{days} school days: correct the register")])


RULE = Rule(id=ID, plan=plan,
            needs=frozenset({Need.DAY_CODES, Need.EPISODE_OUTREACH, Need.REPLY}))
