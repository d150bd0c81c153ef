"""Absence episodes (docs/rules.md "Episodes") and the rules that count their days:
`day3_home_visit` and `continuous_absence_10_days`.

An episode is a run of consecutive school days on which the pupil was absent and never seen.
Weekends, days outside term and closures are not school days, so they neither break nor extend
it; nor does a day whose only marks are not possible sessions (`#`, `Y1`…). A day on which the
child was seen in any session (present, late, `U`, approved activity) ends it, so the next
unexplained absence is a new first day; and so does a school day with no mark at all: we
cannot count a day we know nothing about.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from zoneinfo import ZoneInfo

from broker_messages.codes import UNEXPLAINED, Category, category, seen_on_site

from triage.calendar import SchoolCalendar
from triage.policy import Policy
from triage.rules.decisions import (
    CONTINUOUS_ABSENCE_10_DAYS,
    DAY3_HOME_VISIT,
    Decision,
    Schedule,
    Suppress,
    Withdraw,
    key,
)
from triage.rules.first_day import is_stale, registers_closed_at

DayCodes = Mapping[str, str]  # session -> code
MarksByDay = Mapping[dt.date, DayCodes]


class DayKind(Enum):
    ABSENT = "absent"
    NEUTRAL = "neutral"  # only not-possible sessions: neither breaks nor extends
    ATTENDING = "attending"
    UNMARKED = "unmarked"


def day_kind(codes: DayCodes | None) -> DayKind:
    if not codes:
        return DayKind.UNMARKED
    if any(seen_on_site(code) for code in codes.values()):
        return DayKind.ATTENDING  # seen in any session: the episode ends here
    kinds = {category(code) for code in codes.values()}
    if kinds & {Category.AUTHORISED, Category.UNAUTHORISED}:
        return DayKind.ABSENT
    if kinds == {Category.NOT_POSSIBLE}:
        return DayKind.NEUTRAL
    return DayKind.ATTENDING


@dataclass(frozen=True)
class Episode:
    days: tuple[dt.date, ...]  # the absent school days, in order
    # True when the walk back reached the start of the marks we were given: the episode may
    # have begun earlier, so the caller must load more and ask again.
    truncated: bool = False

    @property
    def start(self) -> dt.date:
        return self.days[0]

    def nth_day(self, n: int) -> dt.date | None:
        """docs/rules.md "The rules": "the n-th school day of an episode" (n=1 is its first day)."""
        return self.days[n - 1] if 1 <= n <= len(self.days) else None


def episode_containing(day: dt.date, marks: MarksByDay, calendar: SchoolCalendar,
                       known_from: dt.date) -> Episode | None:
    """The episode `day` belongs to, or None when the pupil was not absent that day."""
    if not calendar.is_school_day(day) or day_kind(marks.get(day)) is not DayKind.ABSENT:
        return None
    before: list[dt.date] = []
    cursor: dt.date | None = day
    truncated = False
    while True:
        cursor = calendar.previous_school_day(cursor)  # type: ignore[arg-type]
        if cursor is None:
            break
        if cursor < known_from:
            truncated = True
            break
        kind = day_kind(marks.get(cursor))
        if kind is DayKind.ABSENT:
            before.append(cursor)
        elif kind is not DayKind.NEUTRAL:
            break
    after: list[dt.date] = []
    cursor = day
    last_known = max(marks, default=day)
    while True:
        cursor = calendar.next_school_day(cursor)  # type: ignore[arg-type]
        if cursor is None or cursor > last_known:
            break
        kind = day_kind(marks.get(cursor))
        if kind is DayKind.ABSENT:
            after.append(cursor)
        elif kind is not DayKind.NEUTRAL:
            break
    return Episode((*reversed(before), day, *after), truncated)


def episode_ending_before(day: dt.date, marks: MarksByDay, calendar: SchoolCalendar,
                          known_from: dt.date) -> Episode | None:
    """The episode that ran up to the last counted school day before `day` (used when `day` was
    re-coded to present: the episode it belonged to may now be shorter)."""
    cursor: dt.date | None = day
    while True:
        cursor = calendar.previous_school_day(cursor)  # type: ignore[arg-type]
        if cursor is None or cursor < known_from:
            return None
        if day_kind(marks.get(cursor)) is not DayKind.NEUTRAL:
            return episode_containing(cursor, marks, calendar, known_from)


def day3_home_visit_key(school_urn: str, pupil_id: str, episode_start: dt.date) -> str:
    # docs/rules.md "The rules": dedup key "pupil + episode".
    return key(DAY3_HOME_VISIT, school_urn, pupil_id, episode_start)


def unheard(episode: Episode, marks: MarksByDay, through: int) -> bool:
    """Every session of the first `through` days is still N: nobody has heard."""
    return all(code == UNEXPLAINED
               for day in episode.days[:through] for code in marks[day].values())


def day3_home_visit(*, school_urn: str, pupil_id: str, episode: Episode, marks: MarksByDay,
                    calendar: SchoolCalendar, policy: Policy, now: dt.datetime,
                    tz: ZoneInfo) -> Decision | None:
    """The example school policy: "visit you at home if we have not heard from you by day 3"."""
    n = policy.day3_home_visit.day
    dedup_key = day3_home_visit_key(school_urn, pupil_id, episode.start)
    nth = episode.nth_day(n)
    inputs = {"episode_start": episode.start.isoformat(), "days_absent": len(episode.days),
              "day": n}
    if nth is None:
        # Not day 3 yet, or an amendment has shortened the episode: nothing may stay pending.
        return Withdraw(DAY3_HOME_VISIT, dedup_key,
                        f"episode is {len(episode.days)} school day(s) long, not {n}", inputs)
    inputs["visit_day"] = nth.isoformat()
    if not unheard(episode, marks, n):
        return Withdraw(DAY3_HOME_VISIT, dedup_key,
                        f"a session of the first {n} days was re-coded: the school has heard",
                        inputs)
    if is_stale(nth, now, calendar, policy, tz):
        return Suppress(DAY3_HOME_VISIT, dedup_key,
                        f"stale marks: day {n} was more than {policy.max_action_age_days} "
                        "school day(s) ago", inputs, episode_start=episode.start)
    due_at = max(registers_closed_at(nth, policy, tz), now)
    return Schedule(DAY3_HOME_VISIT, dedup_key, due_at,
                    f"day {n} of an episode and every session is still N: home visit due",
                    inputs, episode_start=episode.start)


def day3_home_visit_still_due(*, episode: Episode | None, marks: MarksByDay,
                              episode_start: dt.date, policy: Policy,
                              replied: bool, on_roll: bool) -> str | None:
    """The re-check when the visit falls due; returns why it must not be created."""
    n = policy.day3_home_visit.day
    if not on_roll:
        return "pupil is no longer on roll"
    if replied:
        return "a parent replied during this episode: the school has heard"
    if episode is None or episode.start != episode_start or episode.nth_day(n) is None:
        return f"the episode changed after amendments: no longer day {n} of it"
    if not unheard(episode, marks, n):
        return f"a session of the first {n} days was re-coded: the school has heard"
    return None


def continuous_absence_key(school_urn: str, pupil_id: str, episode_start: dt.date) -> str:
    return key(CONTINUOUS_ABSENCE_10_DAYS, school_urn, pupil_id, episode_start)


def longest_unauthorised_run(episode: Episode, marks: MarksByDay) -> tuple[dt.date, ...]:
    """The longest run of the episode's days on which every session is unauthorised."""
    best: list[dt.date] = []
    run: list[dt.date] = []
    for day in episode.days:
        if all(category(code) in (Category.UNAUTHORISED, Category.NOT_POSSIBLE)
               for code in marks[day].values()):
            run.append(day)
            best = run if len(run) > len(best) else best
        else:
            run = []
    return tuple(best)


def continuous_absence(*, school_urn: str, pupil_id: str, episode: Episode, marks: MarksByDay,
                       calendar: SchoolCalendar, policy: Policy, now: dt.datetime,
                       tz: ZoneInfo) -> Decision | None:
    """Pupil Registration Regulations 2024: 10 consecutive school days of unauthorised absence
    are returned to the local authority."""
    needed = policy.continuous_absence_days
    dedup_key = continuous_absence_key(school_urn, pupil_id, episode.start)
    run = longest_unauthorised_run(episode, marks)
    inputs = {"episode_start": episode.start.isoformat(), "unauthorised_days": len(run),
              "needed": needed}
    if len(run) < needed:
        return Withdraw(CONTINUOUS_ABSENCE_10_DAYS, dedup_key,
                        f"{len(run)} consecutive unauthorised school day(s), fewer than {needed}",
                        inputs)
    inputs["run"] = [run[0].isoformat(), run[-1].isoformat()]
    if is_stale(run[needed - 1], now, calendar, policy, tz):
        return Suppress(CONTINUOUS_ABSENCE_10_DAYS, dedup_key,
                        "stale marks: the run was complete long ago", inputs,
                        episode_start=episode.start)
    return Schedule(CONTINUOUS_ABSENCE_10_DAYS, dedup_key, now,
                    f"{len(run)} consecutive school days of unauthorised absence", inputs,
                    episode_start=episode.start)
