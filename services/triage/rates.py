"""Attendance rates (docs/rules.md "Rates"), kept as counters per pupil per school year.

A mark that arrives or is amended changes the counters by the difference between its old and
its new code, so a rate never needs a year of marks re-read (100k pupils in a morning).
`counts_from_codes` is the from-scratch definition the incremental path is tested against.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from broker_messages.codes import Category, category

# The school year for rates runs 1 August - 31 July (the DfE's attendance year), so the first
# term of September always starts a fresh year and summer-holiday marks belong to the old one.
YEAR_STARTS_MONTH = 8


def school_year_start(day: dt.date) -> dt.date:
    year = day.year if day.month >= YEAR_STARTS_MONTH else day.year - 1
    return dt.date(year, YEAR_STARTS_MONTH, 1)


@dataclass(frozen=True)
class Counts:
    """Sessions of one pupil in one school year, by what they count as."""

    possible: int = 0
    authorised: int = 0
    unauthorised: int = 0

    @property
    def absent(self) -> int:
        # docs/rules.md "Rates": absent = authorised + unauthorised sessions.
        return self.authorised + self.unauthorised

    @property
    def absence_rate(self) -> float:
        return self.absent / self.possible if self.possible else 0.0

    @property
    def attendance_rate(self) -> float:
        # Present and approved off-site activity both count as attending.
        return 1.0 - self.absence_rate

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.possible + other.possible, self.authorised + other.authorised,
                      self.unauthorised + other.unauthorised)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.possible - other.possible, self.authorised - other.authorised,
                      self.unauthorised - other.unauthorised)


@functools.cache  # Counts are immutable: one per code, shared (a morning asks 100,000 times)
def counts_of(code: str | None) -> Counts:
    """What one session with `code` contributes (None: no mark yet)."""
    if code is None:
        return Counts()
    kind = category(code)
    if kind is Category.NOT_POSSIBLE:
        return Counts()
    return Counts(
        possible=1,
        authorised=int(kind is Category.AUTHORISED),
        unauthorised=int(kind is Category.UNAUTHORISED),
    )


@functools.cache
def delta(old_code: str | None, new_code: str) -> Counts:
    """How the counters change when a session's mark goes from `old_code` to `new_code`."""
    return counts_of(new_code) - counts_of(old_code)


def counts_from_codes(codes: Iterable[str]) -> Counts:
    """The from-scratch definition: one year's current marks, summed."""
    total = Counts()
    for code in codes:
        total = total + counts_of(code)
    return total


def rates_actionable(counts: Counts, min_possible_sessions: int) -> bool:
    # docs/rules.md "Rates": one absent session in week one is not "persistent".
    return counts.possible >= min_possible_sessions
