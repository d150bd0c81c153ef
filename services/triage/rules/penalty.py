"""docs/rules.md "The rules" `penalty_notice_threshold` (national framework for penalty notices, Aug 2024):
10 unauthorised sessions (`G`, `N`, `O`, `U`) within any rolling 10 school weeks. A school
week is a week with at least one school day, so half-term and holiday weeks are skipped and a
window runs on across terms. The school must *consider* a notice: staff are told.

Windows that have fired are remembered (`covered_until`), so the next alert needs sessions
after the last window: the same sessions never raise two alerts.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import PENALTY_NOTICE_THRESHOLD, Decision, Schedule, Suppress, key
from triage.rules.first_day import is_stale


def window_from(day: dt.date, calendar: SchoolCalendar, policy: Policy) -> dt.date:
    """The earliest date a window that contains `day` can start on (the marks to load)."""
    weeks = calendar.school_weeks()
    index = bisect.bisect_right(weeks, calendar.school_week_of(day)) - 1
    return weeks[max(index - policy.penalty_notice.weeks + 1, 0)] if weeks else day


def penalty_notice(
    *,
    school_urn: str,
    pupil_id: str,
    sessions: Sequence[dt.date],
    covered_until: dt.date | None,
    calendar: SchoolCalendar,
    policy: Policy,
    now: dt.datetime,
    tz: ZoneInfo,
) -> tuple[Decision | None, dt.date | None]:
    """`sessions`: the date of each unauthorised session (one entry per session). Returns the
    decision for the first window that reaches the threshold, and the new `covered_until`."""
    rule_policy = policy.penalty_notice
    weeks = calendar.school_weeks()
    indexed: list[tuple[int, dt.date]] = []
    for day in sorted(sessions):
        if covered_until is not None and day <= covered_until:
            continue
        week = calendar.school_week_of(day)
        index = bisect.bisect_left(weeks, week)
        if index < len(weeks) and weeks[index] == week:
            indexed.append((index, day))
    for position, (start, _) in enumerate(indexed):
        if position and indexed[position - 1][0] == start:
            continue  # windows start on the first week that has a session
        inside = [day for index, day in indexed[position:] if index < start + rule_policy.weeks]
        if len(inside) < rule_policy.sessions:
            continue
        last_week = weeks[min(start + rule_policy.weeks - 1, len(weeks) - 1)]
        window_end = last_week + dt.timedelta(days=6)
        window_start = weeks[start]
        dedup_key = key(PENALTY_NOTICE_THRESHOLD, school_urn, pupil_id, window_start)
        reached_on = inside[rule_policy.sessions - 1]
        inputs = {"window_start": window_start.isoformat(), "window_end": window_end.isoformat(),
                  "sessions": len(inside), "weeks": rule_policy.weeks,
                  "first": inside[0].isoformat(), "reached_on": reached_on.isoformat()}
        if is_stale(reached_on, now, calendar, policy, tz):
            return Suppress(PENALTY_NOTICE_THRESHOLD, dedup_key,
                            "stale marks: the threshold was reached long ago", inputs), window_end
        return Schedule(
            PENALTY_NOTICE_THRESHOLD, dedup_key, now,
            f"{len(inside)} unauthorised sessions within {rule_policy.weeks} school weeks: "
            "the school must consider a penalty notice", inputs,
        ), window_end
    return None, covered_until
