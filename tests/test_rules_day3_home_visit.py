"""docs/rules.md "day3_home_visit" and "continuous_absence_10_days", the pure rules: each row
is a sentence of the policy. Thursday 19 November, Monday 23 and Tuesday 24 are days 1-3
(Friday 20 is a closure)."""

from __future__ import annotations

import datetime as dt

import pytest
from triage.rules import continuous_absence_10_days, day3_home_visit
from triage.rules.decisions import Schedule, Suppress, Withdraw
from triage.rules.episodes import Episode
from triage.rules.rule import DueFacts, EpisodeFacts

from tests.rule_facts import (
    CALENDAR,
    MONDAY,
    NEXT_MONDAY,
    TUESDAY,
    at,
    due,
    episode_facts,
    every_day,
    pupil,
    school,
)

THURSDAY_BEFORE = dt.date(2026, 11, 19)
DAYS_1_TO_3 = (THURSDAY_BEFORE, MONDAY, TUESDAY)

DECIDE = [
    pytest.param(every_day(DAYS_1_TO_3, "N"), at(TUESDAY, 8, 52), Schedule, at(TUESDAY, 9, 30),
                 id="Trigger: the 3rd consecutive school day of the same episode, every "
                    "session still N: nobody has heard"),
    pytest.param(every_day(DAYS_1_TO_3, "N"), at(TUESDAY, 11), Schedule, at(TUESDAY, 11),
                 id="…due at once when day 3's mark arrives after the registers closed"),
    pytest.param(every_day(DAYS_1_TO_3[:2], "N"), at(MONDAY, 9), Withdraw, "not 3",
                 id="day 2 is not day 3"),
    pytest.param({**every_day(DAYS_1_TO_3, "N"), MONDAY: {"AM": "I", "PM": "N"}},
                 at(TUESDAY, 9), Withdraw, "re-coded",
                 id="Re-check: not created if any of those sessions was re-coded"),
    pytest.param(every_day(DAYS_1_TO_3, "N"), at(NEXT_MONDAY, 9), Suppress, "stale",
                 id="Stale marks contact no family and no professional"),
]


@pytest.mark.parametrize(("marks", "now", "kind", "expected"), DECIDE)
def test_home_visit_decision(marks: dict[dt.date, dict[str, str]], now: dt.datetime,
                             kind: type, expected: object) -> None:
    decision = day3_home_visit.decide(episode_facts(marks, now=now))
    assert isinstance(decision, kind)
    assert decision.dedup_key == "day3_home_visit:123456:P1:2026-11-19", "pupil + episode"
    if isinstance(expected, dt.datetime):
        assert isinstance(decision, Schedule) and decision.due_at == expected
        assert decision.episode_start == THURSDAY_BEFORE
    else:
        assert str(expected) in decision.reason


def _facts(marks: dict[dt.date, dict[str, str]], replied: bool = False,
           start: dt.date = THURSDAY_BEFORE) -> DueFacts:
    days = tuple(sorted(d for d in marks if d >= start))
    return DueFacts(marks=marks, episode=Episode(days) if days else None, replied=replied)


PLAN = [
    pytest.param(_facts(every_day(DAYS_1_TO_3, "N")), None,
                 id="Recipients: a home-visit task, the attendance officer and the DSL"),
    pytest.param(_facts(every_day(DAYS_1_TO_3, "N"), replied=True), "a parent replied",
                 id="not created if a parent replied since the episode began"),
    pytest.param(_facts(every_day(DAYS_1_TO_3, "N"), start=MONDAY), "episode changed",
                 id="not created if the episode has changed after amendments"),
    pytest.param(_facts({**every_day(DAYS_1_TO_3, "N"), TUESDAY: {"AM": "M", "PM": "N"}}),
                 "re-coded", id="not created if any of those sessions was re-coded"),
]


@pytest.mark.parametrize(("facts", "cancel"), PLAN)
def test_home_visit_when_due(facts: DueFacts, cancel: str | None) -> None:
    outreach = day3_home_visit.plan(due("day3_home_visit", TUESDAY, THURSDAY_BEFORE), facts,
                                    school(), pupil(), at(TUESDAY, 9, 30))
    if cancel is not None:
        assert outreach.cancel is not None and cancel in outreach.cancel
        assert not outreach.tasks, "the caller opens no task for a cancelled visit"
        return
    assert outreach.cancel is None and not outreach.family
    assert [r.role for r in outreach.professionals] == ["attendance_officer", "dsl"]
    [task] = outreach.tasks
    assert (task.kind, task.day) == ("home_visit", THURSDAY_BEFORE)


TEN_DAYS = CALENDAR.school_days_from(dt.date(2026, 11, 9), 10)  # Mon 9 Nov … Mon 23 (closure 20)

CONTINUOUS = [
    pytest.param(every_day(TEN_DAYS, "O"), Schedule,
                 id="continuous_absence_10_days: 10 consecutive school days on which every "
                    "session is an unauthorised absence"),
    pytest.param(every_day(TEN_DAYS[:9], "G"), Withdraw, id="9 days are not 10"),
    pytest.param({**every_day(TEN_DAYS, "N"), TEN_DAYS[4]: {"AM": "I", "PM": "N"}}, Withdraw,
                 id="every session unauthorised: an authorised session breaks the run"),
]


@pytest.mark.parametrize(("marks", "kind"), CONTINUOUS)
def test_continuous_absence(marks: dict[dt.date, dict[str, str]], kind: type) -> None:
    facts: EpisodeFacts = episode_facts(marks, now=at(MONDAY, 10))
    decision = continuous_absence_10_days.decide(facts)
    assert isinstance(decision, kind)
    assert decision.dedup_key == "continuous_absence_10_days:123456:P1:2026-11-09"


def test_the_return_goes_to_the_local_authority() -> None:
    outreach = continuous_absence_10_days.plan(
        due("continuous_absence_10_days", MONDAY, dt.date(2026, 11, 9)), DueFacts(), school(),
        pupil(), at(MONDAY, 10))
    assert [r.ref for r in outreach.professionals] == ["123456/la/local_authority"]
