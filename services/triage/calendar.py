"""The school calendar: school days are the weekdays inside a term, minus closures and the
bank holidays of the school's country (docs/contract.md §3). Weekends, holidays and closures neither break nor extend an absence episode.
A `#` mark (planned closure) for a pupil is handled by the episode code: it is not a possible
session, so it neither breaks nor extends an episode either."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import holidays

Country = Literal["england", "wales"]
# The `holidays` package's subdivisions of the United Kingdom.
_SUBDIVISION: dict[Country, str] = {"england": "ENG", "wales": "WLS"}


def bank_holidays(country: Country, years: Iterable[int]) -> dict[dt.date, str]:
    """England's or Wales's bank holidays in `years`, from the maintained `holidays` package
    (substitute days included), not a list kept by hand."""
    found = holidays.country_holidays("GB", subdiv=_SUBDIVISION[country], years=sorted(years))
    return {day: str(name) for day, name in found.items()}


@dataclass(frozen=True)
class Term:
    start: dt.date
    end: dt.date


@dataclass(frozen=True)
class SchoolCalendar:
    terms: tuple[Term, ...]
    closures: frozenset[dt.date] = frozenset()
    # Date -> the holiday's name, for saying why a day is not a school day.
    bank_holidays: Mapping[dt.date, str] = field(default_factory=dict, compare=False)
    _days: tuple[dt.date, ...] = field(init=False, repr=False, compare=False)
    _weeks: tuple[dt.date, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        days = sorted(
            day
            for term in self.terms
            for day in _dates(term.start, term.end)
            if day.weekday() < 5 and day not in self.closures and day not in self.bank_holidays
        )
        object.__setattr__(self, "_days", tuple(days))
        weeks = sorted({day - dt.timedelta(days=day.weekday()) for day in days})
        object.__setattr__(self, "_weeks", tuple(weeks))

    @classmethod
    def from_document(cls, calendar: dict[str, object],
                      country: Country = "england") -> SchoolCalendar:
        terms = tuple(
            Term(dt.date.fromisoformat(t["start"]), dt.date.fromisoformat(t["end"]))
            for t in calendar.get("terms", [])  # type: ignore[attr-defined]
        )
        closures = frozenset(
            dt.date.fromisoformat(d)
            for d in calendar.get("closures", [])  # type: ignore[attr-defined]
        )
        years = {year for term in terms for year in range(term.start.year, term.end.year + 1)}
        return cls(terms, closures, bank_holidays(country, years))

    def is_school_day(self, day: dt.date) -> bool:
        index = bisect.bisect_left(self._days, day)
        return index < len(self._days) and self._days[index] == day

    def why_not_a_school_day(self, day: dt.date) -> str | None:
        """None for a school day; otherwise what the day is, in words a school office uses."""
        if self.is_school_day(day):
            return None
        if day.weekday() >= 5:
            return f"{day:%A} {day.isoformat()} is a weekend"
        if day in self.closures:
            return f"{day.isoformat()} is a closure day in the school's calendar"
        if day in self.bank_holidays:
            return f"{day.isoformat()} is a bank holiday ({self.bank_holidays[day]})"
        return f"{day.isoformat()} is outside the school's terms"

    def previous_school_day(self, day: dt.date) -> dt.date | None:
        index = bisect.bisect_left(self._days, day)
        return self._days[index - 1] if index > 0 else None

    def school_days_from(self, day: dt.date, count: int) -> tuple[dt.date, ...]:
        """Up to `count` school days on or after `day`."""
        index = bisect.bisect_left(self._days, day)
        return self._days[index : index + count]

    def school_days_between(self, start: dt.date, end: dt.date) -> int:
        """School days after `start` up to and including `end` (0 when end <= start)."""
        if end <= start:
            return 0
        return bisect.bisect_right(self._days, end) - bisect.bisect_right(self._days, start)

    def next_school_day(self, day: dt.date) -> dt.date | None:
        index = bisect.bisect_right(self._days, day)
        return self._days[index] if index < len(self._days) else None

    def school_days_in(self, start: dt.date, end: dt.date) -> tuple[dt.date, ...]:
        """The school days from `start` to `end`, both included."""
        return self._days[bisect.bisect_left(self._days, start) : bisect.bisect_right(self._days, end)]

    def school_days_back(self, day: dt.date, count: int) -> dt.date:
        """The school day `count` school days before `day` (or the first one we know)."""
        index = max(bisect.bisect_left(self._days, day) - count, 0)
        return self._days[index] if self._days else day

    def nth_school_day(self, start: dt.date, n: int) -> dt.date | None:
        """The n-th school day of a run that starts on school day `start` (n=1 is `start`)."""
        index = bisect.bisect_left(self._days, start) + n - 1
        return self._days[index] if 0 <= index < len(self._days) and n >= 1 else None

    def school_weeks(self) -> tuple[dt.date, ...]:
        """Mondays of the weeks with at least one school day: penalty notices count these, so a
        half-term or holiday week is skipped and a window runs on across terms."""
        return self._weeks

    def school_week_of(self, day: dt.date) -> dt.date:
        return day - dt.timedelta(days=day.weekday())


def _dates(start: dt.date, end: dt.date) -> Iterable[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)
