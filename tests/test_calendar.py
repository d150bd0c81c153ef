"""The school calendar and absence episodes (docs/rules.md "Episodes", docs/contract.md §3)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from triage.calendar import SchoolCalendar, Term
from triage.rules.episodes import DayKind, day_kind, episode_containing

AUTUMN = SchoolCalendar((Term(dt.date(2026, 9, 3), dt.date(2026, 10, 23)),
                         Term(dt.date(2026, 11, 2), dt.date(2026, 12, 18))),
                        frozenset({dt.date(2026, 11, 20)}))
days = st.dates(min_value=dt.date(2026, 8, 20), max_value=dt.date(2027, 1, 10))


def test_school_days_are_weekdays_in_term_minus_closures() -> None:
    assert AUTUMN.is_school_day(dt.date(2026, 11, 19))
    assert not AUTUMN.is_school_day(dt.date(2026, 11, 20))  # INSET closure
    assert not AUTUMN.is_school_day(dt.date(2026, 11, 21))  # Saturday
    assert not AUTUMN.is_school_day(dt.date(2026, 10, 28))  # half term


def test_nth_school_day_skips_weekends_closures_and_half_term() -> None:
    assert AUTUMN.nth_school_day(dt.date(2026, 11, 19), 2) == dt.date(2026, 11, 23)
    assert AUTUMN.nth_school_day(dt.date(2026, 10, 22), 3) == dt.date(2026, 11, 2)


def test_school_weeks_leave_out_the_half_term_week() -> None:
    weeks = AUTUMN.school_weeks()
    assert dt.date(2026, 10, 26) not in weeks and dt.date(2026, 11, 2) in weeks


@settings(max_examples=200, deadline=None)
@given(days, days, days)
def test_school_days_between_adds_up(a: dt.date, b: dt.date, c: dt.date) -> None:
    first, middle, last = sorted((a, b, c))
    assert (AUTUMN.school_days_between(first, middle) + AUTUMN.school_days_between(middle, last)
            == AUTUMN.school_days_between(first, last))
    assert AUTUMN.school_days_between(first, last) == len(
        [d for d in AUTUMN.school_days_in(first + dt.timedelta(days=1), last)])


@settings(max_examples=200, deadline=None)
@given(days, st.integers(min_value=1, max_value=30))
def test_nth_school_day_is_n_minus_1_school_days_later(start: dt.date, n: int) -> None:
    if not AUTUMN.is_school_day(start):
        return
    nth = AUTUMN.nth_school_day(start, n)
    if nth is not None:
        assert AUTUMN.is_school_day(nth)
        assert AUTUMN.school_days_between(start, nth) == n - 1


codes = st.sampled_from(["/", "N", "I", "O", "#", "V"])


@settings(max_examples=150, deadline=None)
@given(st.lists(codes, min_size=1, max_size=25), st.integers(min_value=0, max_value=24))
def test_episodes_are_runs_of_absent_school_days_ignoring_non_school_days(
    sequence: list[str], pick: int,
) -> None:
    school_days = AUTUMN.school_days_from(dt.date(2026, 10, 12), len(sequence))
    marks = {day: {"AM": code} for day, code in zip(school_days, sequence, strict=False)}
    day = school_days[pick % len(school_days)]
    episode = episode_containing(day, marks, AUTUMN, school_days[0])
    if day_kind(marks[day]) is not DayKind.ABSENT:
        assert episode is None
        return
    assert episode is not None and day in episode.days
    for inside in episode.days:
        assert day_kind(marks[inside]) is DayKind.ABSENT
    # Everything between its first and last day is absent or neutral (`#`).
    for between in AUTUMN.school_days_in(episode.days[0], episode.days[-1]):
        assert day_kind(marks[between]) in (DayKind.ABSENT, DayKind.NEUTRAL)
    before = AUTUMN.previous_school_day(episode.days[0])
    while before is not None and before in marks and day_kind(marks[before]) is DayKind.NEUTRAL:
        before = AUTUMN.previous_school_day(before)
    if before is not None and before in marks and not episode.truncated:
        assert day_kind(marks[before]) is not DayKind.ABSENT
