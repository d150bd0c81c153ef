"""docs/rules.md "penalty_notice_threshold" (the national framework for penalty notices, Aug
2024): 10 unauthorised sessions (`G`, `N`, `O`, `U`) within any rolling 10 school weeks. A
school week is a week with at least one school day, so half-term and holiday weeks are skipped
and a window runs on across terms. The school must *consider* a notice: staff are told, nothing
goes to the family.

Windows that have fired are remembered (`covered_until`), so the next alert needs sessions
after the last window: the same sessions never raise two alerts.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import Decision, Schedule, Suppress, key
from triage.rules.marks import is_stale
from triage.rules.professional import staff_details
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "penalty_notice_threshold"


def window_from(day: dt.date, calendar: SchoolCalendar, policy: Policy) -> dt.date:
    """The earliest date a window that contains `day` can start on (the marks to load)."""
    weeks = calendar.school_weeks()
    index = bisect.bisect_right(weeks, calendar.school_week_of(day)) - 1
    return weeks[max(index - policy.penalty_notice.weeks + 1, 0)] if weeks else day


@dataclass(frozen=True)
class Window:
    """The first window of school weeks that holds enough unauthorised sessions."""

    start: dt.date
    end: dt.date
    inside: list[dt.date]  # the sessions in it, one entry per session, in date order


def first_window(sessions: Iterable[dt.date], covered_until: dt.date | None,
                 calendar: SchoolCalendar, policy: Policy) -> Window | None:
    """The rule's test: the first window of `penalty_notice.weeks` school weeks holding at
    least `penalty_notice.sessions` of `sessions` after `covered_until` (the staff lists ask
    it too, with nothing covered)."""
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
        return Window(weeks[start], last_week + dt.timedelta(days=6), inside)
    return None


def decide(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
    """The decision for the first window that reaches the threshold, and the state that
    remembers it (`covered_until`: the window's last day)."""
    if not facts.unauthorised_sessions:
        return state, None
    rule_policy = facts.policy.penalty_notice
    window = first_window(facts.unauthorised_sessions, state.covered_until, facts.calendar,
                          facts.policy)
    if window is None:
        return state, None
    inside = window.inside
    dedup = key(ID, facts.school_urn, facts.pupil.id, window.start)  # pupil + window start
    reached_on = inside[rule_policy.sessions - 1]
    inputs = {"window_start": window.start.isoformat(), "window_end": window.end.isoformat(),
              "sessions": len(inside), "weeks": rule_policy.weeks,
              "first": inside[0].isoformat(), "reached_on": reached_on.isoformat()}
    after = RuleState(state.armed, state.crossings + 1, window.end)
    if is_stale(reached_on, facts.now, facts.calendar, facts.policy, facts.tz):
        return after, Suppress(ID, dedup, "stale marks: the threshold was reached long ago",
                               inputs)
    return after, Schedule(
        ID, dedup, facts.now,
        f"{len(inside)} unauthorised sessions within {rule_policy.weeks} school weeks: "
        "the school must consider a penalty notice", inputs,
    )


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    return Outreach(professionals=[*school.staff_recipients("attendance_officer"),
                                   *school.staff_recipients("headteacher")],
                    staff_details={"sessions_needed": school.policy.penalty_notice.sessions,
                                   "weeks": school.policy.penalty_notice.weeks,
                                   **staff_details(ID, due.date, school, facts.year_outreach)})


RULE = Rule(id=ID, on_rates=decide, state_scope="all", plan=plan,
            needs=frozenset({Need.YEAR_OUTREACH}))
