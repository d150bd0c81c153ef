"""docs/rules.md "first_day_contact", the pure rule: each row is a sentence of the policy."""

from __future__ import annotations

import datetime as dt

import pytest
from triage.policy import FirstDayContactPolicy, Policy
from triage.rules import first_day_contact
from triage.rules.decisions import Schedule, Suppress, Withdraw
from triage.rules.recipients import COURT_ORDER
from triage.rules.rule import DayFacts, DueFacts
from triage.school_document import Pupil

from tests.rule_facts import (
    MONDAY,
    SATURDAY,
    WEDNESDAY,
    at,
    day_facts,
    due,
    parent,
    pupil,
    school,
)

LATE_GRACE = Policy(first_day_contact=FirstDayContactPolicy(grace_minutes=15))

DECIDE = [
    # (docs/rules.md sentence, facts, decision kind, due at or reason fragment)
    pytest.param(day_facts(MONDAY, {"AM": "N"}), Schedule, at(MONDAY, 9, 30),
                 id="Trigger: the first school day of an absence episode, with a session "
                    "still N at first_day_contact.not_before (default 09:30)"),
    pytest.param(day_facts(MONDAY, {"AM": "N"}, policy=LATE_GRACE), Schedule,
                 at(MONDAY, 9, 45), id="…plus first_day_contact.grace_minutes"),
    pytest.param(day_facts(MONDAY, {"AM": "/", "PM": "N"}), Schedule, at(MONDAY, 9, 30),
                 id="Dedup key: one contact per pupil per day, however many sessions are N"),
    pytest.param(day_facts(MONDAY, {"AM": "N"}, previous_day_absent=True), None, None,
                 id="A later day of an episode that began on an earlier school day is not a "
                    "first day"),
    pytest.param(day_facts(MONDAY, {"AM": "I"}), Withdraw, "no longer unexplained",
                 id="Unexplained means N and nothing else (amended to I: nothing is sent)"),
    pytest.param(day_facts(MONDAY, {"AM": "O"}), Withdraw, "no longer unexplained",
                 id="O and G are unauthorised but explained"),
    pytest.param(day_facts(SATURDAY, {"AM": "N"}), Suppress, "not a school day",
                 id="Only school days count"),
    pytest.param(day_facts(MONDAY, {"AM": "N"}, now=at(WEDNESDAY, 9)), Suppress, "stale",
                 id="Stale marks: more than max_action_age_days school days before today "
                    "contact no family"),
]


@pytest.mark.parametrize(("facts", "kind", "expected"), DECIDE)
def test_decision(facts: DayFacts, kind: type | None, expected: object) -> None:
    decision = first_day_contact.decide(facts)
    if kind is None:
        assert decision is None
        return
    assert isinstance(decision, kind)
    assert decision.rule == "first_day_contact"
    assert decision.dedup_key == "first_day_contact:123456:P1:" + facts.day.isoformat()
    if isinstance(expected, dt.datetime):
        assert isinstance(decision, Schedule) and decision.due_at == expected
        assert decision.episode_start == facts.day
    else:
        assert str(expected) in decision.reason


VOICE = Policy(first_day_contact=FirstDayContactPolicy(voice=True))
COURT = pupil([parent(1, no_contact=True), parent(2)])

PLAN = [
    # (docs/rules.md sentence, codes at send time, now, pupil, policy, refs and channels / cancel)
    pytest.param({"AM": "N"}, at(MONDAY, 9, 30), pupil(), Policy(),
                 [("P1/contact/1", ("sms", "email"))],
                 id="Recipients: parents and carers on first_day_contact.channels "
                    "(default SMS and email)"),
    pytest.param({"AM": "N"}, at(MONDAY, 9, 30), pupil(), VOICE,
                 [("P1/contact/1", ("sms", "email", "voice"))],
                 id="a voice call is added when first_day_contact.voice is true"),
    pytest.param({"AM": "N"}, at(MONDAY, 9, 30), COURT, Policy(),
                 [("P1/contact/2", ("sms", "email"))],
                 id="Contact order: a no_contact contact is never contacted"),
    pytest.param({"AM": "M"}, at(MONDAY, 9, 30), pupil(), Policy(), "re-coded AM M",
                 id="Re-check: amended to any code other than N, nothing is sent"),
    pytest.param({"AM": "N"}, at(WEDNESDAY, 9, 30), pupil(), Policy(), "too late",
                 id="A first-day contact still waiting when it becomes that old is not sent"),
]


@pytest.mark.parametrize(("codes", "now", "who", "policy", "expected"), PLAN)
def test_send_time_plan(codes: dict[str, str], now: dt.datetime, who: Pupil, policy: Policy,
                        expected: object) -> None:
    outreach = first_day_contact.plan(due("first_day_contact", MONDAY), DueFacts(codes=codes),
                                      school(policy), who, now)
    if isinstance(expected, str):
        assert outreach.cancel is not None and expected in outreach.cancel
        assert not outreach.family
        return
    assert outreach.cancel is None and outreach.episode_start == MONDAY
    assert [(r.ref, r.channels) for r in outreach.family] == expected
    assert not outreach.professionals and not outreach.tasks


def test_skipped_contacts_are_recorded_with_why() -> None:
    outreach = first_day_contact.plan(due("first_day_contact", MONDAY),
                                      DueFacts(codes={"AM": "N"}), school(), COURT,
                                      at(MONDAY, 9, 30))
    assert outreach.skipped == [{"ref": "P1/contact/1", "why": COURT_ORDER}]
