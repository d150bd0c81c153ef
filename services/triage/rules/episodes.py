"""Absence episodes (docs/rules.md "Episodes"), which `day3_home_visit` and
`continuous_absence_10_days` count the days of.

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

from broker_messages.codes import Category, category, seen_on_site

from triage.calendar import SchoolCalendar

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
        cursor = calendar.next_school_day(cursor)
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
