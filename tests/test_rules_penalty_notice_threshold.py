"""docs/rules.md "penalty_notice_threshold" and "ehcp_absence_15_days", the pure rules: each row
is a sentence of the policy. The autumn term's school weeks start on Monday 31 August."""

from __future__ import annotations

import datetime as dt

import pytest
from triage.rates import Counts
from triage.rules import ehcp_absence_15_days, penalty_notice_threshold
from triage.rules.decisions import Schedule, Suppress
from triage.rules.rule import DueFacts, RuleState

from tests.rule_facts import MONDAY, at, due, pupil, rate_facts, school


def twice(*days: dt.date) -> list[dt.date]:
    """Both sessions of each day."""
    return [day for day in days for _ in range(2)]


WEEK_OF_16TH = [dt.date(2026, 11, d) for d in (16, 17, 18, 19)]
TEN = twice(*WEEK_OF_16TH, MONDAY)  # reached on Monday 23 November

PENALTY = [
    # (sessions, state before, decision kind, state after)
    pytest.param(TEN, RuleState(), Schedule, RuleState(True, 1, dt.date(2026, 12, 20)),
                 id="10 unauthorised sessions within any rolling 10 school weeks"),
    pytest.param(TEN[:9], RuleState(), None, RuleState(), id="9 sessions are not 10"),
    pytest.param([dt.date(2026, 9, 7), *twice(*WEEK_OF_16TH), MONDAY], RuleState(), None,
                 RuleState(), id="a window is 10 school weeks: the 7 September session is "
                                 "outside the window that holds the other nine"),
    pytest.param(TEN, RuleState(True, 1, dt.date(2026, 11, 19)), None,
                 RuleState(True, 1, dt.date(2026, 11, 19)),
                 id="Sessions inside a window that has already raised an alert do not count "
                    "towards another"),
    pytest.param(twice(*[dt.date(2026, 11, d) for d in (12, 13, 16, 17, 18)]), RuleState(),
                 Suppress, RuleState(True, 1, dt.date(2026, 12, 20)),
                 id="Stale marks contact nobody (reached on 18 November, seen on the 23rd)"),
]


@pytest.mark.parametrize(("sessions", "before", "kind", "after"), PENALTY)
def test_penalty_window(sessions: list[dt.date], before: RuleState, kind: type | None,
                        after: RuleState) -> None:
    state, decision = penalty_notice_threshold.decide(rate_facts(Counts(), sessions=sessions),
                                                      before)
    assert state == after
    if kind is None:
        assert decision is None
        return
    assert isinstance(decision, kind)
    window = decision.inputs["window_start"]
    assert decision.dedup_key == f"penalty_notice_threshold:123456:P1:{window}", (
        "pupil + window start")


def test_a_school_week_without_school_days_is_skipped() -> None:
    """A school week is a week with at least one school day, so holiday weeks are skipped and a
    window runs on across terms."""
    weeks = [dt.date(2026, 8, 31) + dt.timedelta(weeks=n) for n in range(16)]
    facts = rate_facts(Counts(), sessions=TEN)
    assert penalty_notice_threshold.window_from(MONDAY, facts.calendar, facts.policy) == weeks[3]


def test_the_officer_and_the_head_must_consider_a_notice_and_nothing_goes_to_the_family() -> None:
    outreach = penalty_notice_threshold.plan(due("penalty_notice_threshold", MONDAY), DueFacts(),
                                             school(), pupil(), at(MONDAY, 10))
    assert not outreach.family
    assert [r.role for r in outreach.professionals] == ["attendance_officer", "headteacher"]


EHCP = [
    pytest.param(True, 31, Schedule,
                 id="A pupil with an EHCP absent, for any reason, for more than "
                    "ehcp_absence_days (default 15) school days (two sessions make a day)"),
    pytest.param(True, 30, None, id="15 days are not more than 15"),
    pytest.param(False, 60, None, id="no EHCP: the rule does not apply"),
]


@pytest.mark.parametrize(("ehcp", "absent_sessions", "kind"), EHCP)
def test_ehcp_absence(ehcp: bool, absent_sessions: int, kind: type | None) -> None:
    counts = Counts(possible=150, authorised=absent_sessions)
    state, decision = ehcp_absence_15_days.RULE.on_rates(  # type: ignore[misc]
        rate_facts(counts, who=pupil(ehcp=ehcp)), RuleState())
    assert state == RuleState()
    if kind is None:
        assert decision is None
        return
    assert isinstance(decision, kind)
    assert decision.dedup_key == "ehcp_absence_15_days:123456:P1:2026", "pupil + year"


def test_ehcp_absence_goes_to_the_send_team() -> None:
    outreach = ehcp_absence_15_days.plan(due("ehcp_absence_15_days", MONDAY), DueFacts(),
                                         school(), pupil(ehcp=True), at(MONDAY, 10))
    assert [r.ref for r in outreach.professionals] == ["123456/la/send_team"]
