"""docs/rules.md "unexplained_not_recoded": the School Attendance (Pupil Registration)
(England) Regulations 2024 require an `N` to be replaced with the right code within 5 school
days. An `N` still standing then is flagged to the attendance officer, once per pupil and day
(for the day's first session still `N`), so a register left uncorrected never goes unnoticed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from broker_messages.codes import UNEXPLAINED

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import (
    UNEXPLAINED_NOT_RECODED,
    Decision,
    Schedule,
    Suppress,
    Withdraw,
    key,
)
from triage.rules.first_day import is_stale, registers_closed_at

SESSIONS = ("AM", "PM")


def not_recoded_key(school_urn: str, pupil_id: str, day: dt.date, session: str) -> str:
    # docs/rules.md: dedup key "pupil + date + session".
    return key(UNEXPLAINED_NOT_RECODED, school_urn, pupil_id, day, session)


def sessions_still_unexplained(codes: Mapping[str, str]) -> list[str]:
    return [session for session in SESSIONS if codes.get(session) == UNEXPLAINED]


def recode_deadline(day: dt.date, calendar: SchoolCalendar, policy: Policy,
                    tz: ZoneInfo) -> dt.datetime | None:
    """When the `N` counts as left uncorrected: `recode_within_days` school days after `day`,
    once registers have closed that morning. None when the calendar does not reach that far."""
    deadline_day = calendar.nth_school_day(day, policy.recode_within_days + 1)
    return None if deadline_day is None else registers_closed_at(deadline_day, policy, tz)


def unexplained_not_recoded(*, school_urn: str, pupil_id: str, day: dt.date,
                            codes: Mapping[str, str], calendar: SchoolCalendar, policy: Policy,
                            now: dt.datetime, tz: ZoneInfo) -> list[Decision]:
    """One scheduled check per pupil and day, keyed by the day's first session still `N`;
    every other session's key is withdrawn, so re-coding the morning moves the check to the
    afternoon rather than losing it."""
    standing = sessions_still_unexplained(codes)
    inputs = {"date": day.isoformat(), "sessions": standing}
    decisions: list[Decision] = []
    for session in SESSIONS:
        if standing and session == standing[0]:
            continue
        decisions.append(Withdraw(UNEXPLAINED_NOT_RECODED,
                                  not_recoded_key(school_urn, pupil_id, day, session),
                                  "re-coded: no longer N" if session in codes
                                  else "no N in this session", inputs))
    if not standing or not calendar.is_school_day(day):
        return decisions
    dedup_key = not_recoded_key(school_urn, pupil_id, day, standing[0])
    due_at = recode_deadline(day, calendar, policy, tz)
    if due_at is None:
        return decisions  # beyond the known calendar: decided when the next upload extends it
    if is_stale(due_at.astimezone(tz).date(), now, calendar, policy, tz):
        decisions.append(Suppress(UNEXPLAINED_NOT_RECODED, dedup_key,
                                  "stale marks: the deadline to re-code passed long ago (an "
                                  "imported register)", inputs))
        return decisions
    decisions.append(Schedule(UNEXPLAINED_NOT_RECODED, dedup_key, due_at,
                              f"N must be re-coded within {policy.recode_within_days} school "
                              f"days; check at {due_at.isoformat()}", inputs, episode_start=day))
    return decisions
