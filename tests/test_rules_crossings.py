"""docs/rules.md "Rates", "Crossings" and the four rate rules (`attendance_stage1`,
`persistent_absence`, `la_referral`, `severe_absence`), pure: each row is a sentence of the
policy."""

from __future__ import annotations

from types import ModuleType

import pytest
from triage.policy import PersistentAbsencePolicy, Policy
from triage.rates import Counts
from triage.rules import attendance_stage1, la_referral, persistent_absence, severe_absence
from triage.rules.decisions import Schedule
from triage.rules.rule import DueFacts, RuleState
from triage.school_document import SocialWorker

from tests.rule_facts import MONDAY, WORKER, at, due, pupil, rate_facts, school

ARMED = RuleState()
CROSSED_ONCE = RuleState(armed=False, crossings=1)


def absent(sessions: int, possible: int = 100) -> Counts:
    return Counts(possible=possible, authorised=sessions, unauthorised=0)


CROSSINGS = [
    # (rule, counts, state before, crossing number that fires or None, state after)
    pytest.param(attendance_stage1, absent(9), ARMED, 1, CROSSED_ONCE,
                 id="Stage 1: attendance_rate < stage1_below (default 92%)"),
    pytest.param(attendance_stage1, absent(8), ARMED, None, ARMED, id="92% is not below 92%"),
    pytest.param(persistent_absence, absent(10), ARMED, 1, CROSSED_ONCE,
                 id="Persistent absence: absence_rate >= persistent_at (default 10%)"),
    pytest.param(persistent_absence, absent(9), ARMED, None, ARMED, id="9% is not persistent"),
    pytest.param(la_referral, absent(11), ARMED, 1, CROSSED_ONCE,
                 id="Referral: attendance_rate < referral_below (default 90%)"),
    pytest.param(la_referral, absent(10), ARMED, None, ARMED, id="90% is not below 90%"),
    pytest.param(severe_absence, absent(50), ARMED, 1, CROSSED_ONCE,
                 id="Severe absence: absence_rate >= severe_at (default 50%)"),
    pytest.param(persistent_absence, absent(19, possible=19), ARMED, None, ARMED,
                 id="Rates are not acted on until the pupil has at least min_possible_sessions "
                    "(default 20)"),
    pytest.param(persistent_absence, absent(12), CROSSED_ONCE, None, CROSSED_ONCE,
                 id="Crossings: fire when the rate crosses their line, once"),
    pytest.param(persistent_absence, absent(19, possible=200), CROSSED_ONCE, None,
                 CROSSED_ONCE, id="stays disarmed until recovered past the line by hysteresis"),
    pytest.param(persistent_absence, absent(9),
                 CROSSED_ONCE, None, RuleState(armed=True, crossings=1),
                 id="recovered by hysteresis (default 1 percentage point): armed again"),
    pytest.param(persistent_absence, absent(10), RuleState(armed=True, crossings=1), 2,
                 RuleState(armed=False, crossings=2),
                 id="Crossings are counted per pupil, rule and school year; the crossing "
                    "number is the dedup key"),
]


@pytest.mark.parametrize(("rule", "counts", "before", "number", "after"), CROSSINGS)
def test_crossing(rule: ModuleType, counts: Counts, before: RuleState, number: int | None,
                  after: RuleState) -> None:
    assert rule.RULE.on_rates is not None
    state, decision = rule.RULE.on_rates(rate_facts(counts), before)
    assert state == after
    if number is None:
        assert decision is None
        return
    assert isinstance(decision, Schedule) and decision.rule == rule.ID
    assert decision.dedup_key == f"{rule.ID}:123456:P1:2026:crossing-{number}"


LA_ONLY = ["123456/la/local_authority"]
NO_LA = Policy(persistent_absence=PersistentAbsencePolicy(inform_la=False))
WITH_WORKER = pupil(social_worker=SocialWorker(**WORKER))

RECIPIENTS = [
    # (rule, policy, family channels, professional refs)
    pytest.param(attendance_stage1, Policy(), ("sms",), ["123456/staff/attendance_officer/0"],
                 id="attendance_stage1: Parent (SMS) and the attendance officer (email)"),
    pytest.param(persistent_absence, Policy(), ("sms", "email"),
                 ["123456/staff/attendance_officer/0", *LA_ONLY],
                 id="persistent_absence: Parent (SMS and email); the attendance officer; the "
                    "LA while persistent_absence.inform_la is true"),
    pytest.param(persistent_absence, NO_LA, ("sms", "email"),
                 ["123456/staff/attendance_officer/0"], id="…and not the LA when it is false"),
    pytest.param(la_referral, Policy(), None, LA_ONLY,
                 id="la_referral: the local authority's attendance team (email)"),
    pytest.param(severe_absence, Policy(), None,
                 ["123456/staff/attendance_officer/0", "123456/staff/dsl/1", *LA_ONLY,
                  "P1/social_worker"],
                 id="severe_absence: the officer, the DSL, the LA and the social worker"),
]


@pytest.mark.parametrize(("rule", "policy", "channels", "refs"), RECIPIENTS)
def test_who_hears_when_still_crossed(rule: ModuleType, policy: Policy,
                                      channels: tuple[str, ...] | None, refs: list[str]) -> None:
    assert rule.RULE.plan is not None
    outreach = rule.RULE.plan(due(rule.ID, MONDAY), DueFacts(year_counts=absent(60)), school(policy),
                         WITH_WORKER, at(MONDAY, 10))
    assert outreach.cancel is None
    assert [r.channels for r in outreach.family] == ([channels] if channels else [])
    assert [r.ref for r in outreach.professionals] == refs
    # la_referral: "with the pupil's summary (the rates and the number of possible sessions)".
    assert outreach.details == {"attendance_percent": 40.0, "absence_percent": 60.0,
                                "possible_sessions": 100}


@pytest.mark.parametrize("rule", [attendance_stage1, persistent_absence, la_referral,
                                  severe_absence])
def test_an_amendment_that_undid_the_crossing_sends_nothing(rule: ModuleType) -> None:
    """Crossings: "if an amendment has taken the pupil back over the line, nothing is sent"."""
    assert rule.RULE.plan is not None
    outreach = rule.RULE.plan(due(rule.ID, MONDAY), DueFacts(year_counts=absent(0)), school(),
                         pupil(), at(MONDAY, 10))
    assert outreach.cancel is not None and "no longer" in outreach.cancel
