"""docs/rules.md "social_worker_unexplained", "looked_after_unexplained" and
"register_removal", the pure rules: each row is a sentence of the policy."""

from __future__ import annotations

import datetime as dt

import pytest
from triage.rules import looked_after_unexplained, register_removal, social_worker_unexplained
from triage.rules.decisions import Schedule, Suppress, Withdraw
from triage.rules.rule import DayFacts, DueFacts, RemovalFacts
from triage.school_document import Pupil, SocialWorker

from tests.rule_facts import MONDAY, SATURDAY, WEDNESDAY, WORKER, at, day_facts, due, pupil, school

WITH_WORKER = pupil(social_worker=SocialWorker(**WORKER))
LOOKED_AFTER = pupil(social_worker=SocialWorker(**WORKER), looked_after=True)

RULES = {"social_worker_unexplained": social_worker_unexplained,
         "looked_after_unexplained": looked_after_unexplained}

DECIDE = [
    pytest.param("social_worker_unexplained", day_facts(MONDAY, {"AM": "N"}, who=WITH_WORKER),
                 Schedule, at(MONDAY, 9, 30),
                 id="Any session recorded N for a pupil who has a social worker; due once the "
                    "registers have closed"),
    pytest.param("social_worker_unexplained",
                 day_facts(MONDAY, {"AM": "N"}, who=WITH_WORKER, now=at(MONDAY, 11)),
                 Schedule, at(MONDAY, 11), id="…at once when the N arrives later"),
    pytest.param("social_worker_unexplained",
                 day_facts(MONDAY, {"AM": "N"}, who=WITH_WORKER, previous_day_absent=True),
                 Schedule, at(MONDAY, 9, 30), id="one alert per school day, not per episode"),
    pytest.param("social_worker_unexplained", day_facts(MONDAY, {"AM": "N"}), None, None,
                 id="no social worker: nobody to inform"),
    pytest.param("social_worker_unexplained", day_facts(MONDAY, {"AM": "M"}, who=WITH_WORKER),
                 Withdraw, "no longer unexplained",
                 id="a parent's call to the office at 9 o'clock can still explain it"),
    pytest.param("social_worker_unexplained", day_facts(SATURDAY, {"AM": "N"}, who=WITH_WORKER),
                 Suppress, "not a school day", id="Only school days count"),
    pytest.param("social_worker_unexplained",
                 day_facts(MONDAY, {"AM": "N"}, who=WITH_WORKER, now=at(WEDNESDAY, 9)),
                 Suppress, "stale", id="Stale marks contact no professional"),
    pytest.param("looked_after_unexplained", day_facts(MONDAY, {"AM": "N"}, who=LOOKED_AFTER),
                 Schedule, at(MONDAY, 9, 30),
                 id="As social_worker_unexplained, for a looked-after child"),
    pytest.param("looked_after_unexplained", day_facts(MONDAY, {"AM": "N"}, who=WITH_WORKER),
                 None, None, id="not looked after: the Virtual School is not told"),
]


@pytest.mark.parametrize(("rule", "facts", "kind", "expected"), DECIDE)
def test_unexplained_alert_decision(rule: str, facts: DayFacts, kind: type | None,
                                    expected: object) -> None:
    decision = RULES[rule].decide(facts)
    if kind is None:
        assert decision is None
        return
    assert isinstance(decision, kind) and decision.rule == rule
    assert decision.dedup_key == f"{rule}:123456:P1:{facts.day.isoformat()}", "pupil + date"
    if isinstance(expected, dt.datetime):
        assert isinstance(decision, Schedule) and decision.due_at == expected
    else:
        assert str(expected) in decision.reason


PLAN = [
    pytest.param("social_worker_unexplained", {"AM": "N"}, WITH_WORKER,
                 ["P1/social_worker"], id="Recipients: the pupil's social worker (email)"),
    pytest.param("looked_after_unexplained", {"AM": "N"}, LOOKED_AFTER,
                 ["123456/la/virtual_school"],
                 id="Recipients: the Virtual School of the local authority (email)"),
    pytest.param("social_worker_unexplained", {"AM": "L"}, WITH_WORKER, "re-coded",
                 id="Not sent if the day's marks are no longer N when it falls due"),
    pytest.param("looked_after_unexplained", {"AM": "I"}, LOOKED_AFTER, "re-coded",
                 id="(looked after) not sent if no longer N"),
]


@pytest.mark.parametrize(("rule", "codes", "who", "expected"), PLAN)
def test_unexplained_alert_when_due(rule: str, codes: dict[str, str], who: Pupil,
                                    expected: object) -> None:
    outreach = RULES[rule].plan(due(rule, MONDAY), DueFacts(codes=codes), school(), who,
                                at(MONDAY, 9, 30))
    if isinstance(expected, str):
        assert outreach.cancel is not None and expected in outreach.cancel
        return
    assert outreach.cancel is None and not outreach.family
    assert [r.ref for r in outreach.professionals] == expected
    assert all(r.channels == ("email",) for r in outreach.professionals)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(("facts", "expected"), [
    pytest.param(DueFacts(codes={"AM": "N", "PM": "N"}, family_contacts_requested=2,
                          home_visit_planned=True),
                 {"sessions": "AM and PM", "contact_attempts": 2, "home_visit_planned": 1},
                 id="day 3: the earlier contacts counted, the visit planned"),
    pytest.param(DueFacts(codes={"AM": "N", "PM": "/"}, family_contacts_requested=1),
                 {"sessions": "AM", "contact_attempts": 1, "home_visit_planned": 0},
                 id="day 1: the first-day contact going out with it, no visit yet"),
])
def test_unexplained_alert_carries_what_a_professional_needs(
        rule: str, facts: DueFacts, expected: dict[str, object]) -> None:
    """The sessions still N, the family contacts requested in the episode, whether a home visit
    is planned, and whom at the school to ask: the attendance officer."""
    outreach = RULES[rule].plan(due(rule, MONDAY), facts, school(), LOOKED_AFTER,
                                at(MONDAY, 9, 30))
    assert outreach.details == {**expected, "school_contact": "R Baish", "act_by": "2026-11-23"}


def test_an_alert_with_no_attendance_officer_names_no_school_contact() -> None:
    outreach = social_worker_unexplained.plan(
        due("social_worker_unexplained", MONDAY), DueFacts(codes={"AM": "N"}),
        school(staff=[]), WITH_WORKER, at(MONDAY, 9, 30))
    assert "school_contact" not in outreach.details


REMOVAL = RemovalFacts(school_urn="123456", pupil_id="P1", removed_on=MONDAY,
                       ground="moved abroad", now=at(MONDAY, 10))


def test_removal_is_scheduled_at_once_keyed_by_its_date_with_the_ground_kept_out() -> None:
    """register_removal: dedup key "pupil + removal (its date)"; "the ground given for the
    removal is kept in the decision log and never put in a message"."""
    decision = register_removal.decide(REMOVAL)
    assert isinstance(decision, Schedule) and decision.due_at == REMOVAL.now
    assert decision.dedup_key == "register_removal:123456:P1:2026-11-23"
    assert decision.inputs["ground"] == "moved abroad"
    outreach = register_removal.plan(due("register_removal", MONDAY), DueFacts(), school(),
                                     WITH_WORKER, at(MONDAY, 10))
    assert [r.ref for r in outreach.professionals] == ["P1/social_worker",
                                                       "123456/la/local_authority"]
    assert "moved abroad" not in repr(outreach)


@pytest.mark.parametrize(("who", "refs"), [
    pytest.param(WITH_WORKER, ["P1/social_worker", "123456/la/local_authority"],
                 id="the social worker, if the pupil has one, and the LA attendance team"),
    pytest.param(pupil(), ["123456/la/local_authority"], id="no social worker: the LA only"),
])
def test_removal_recipients(who: Pupil, refs: list[str]) -> None:
    assert register_removal.RULE.acts_off_roll, "the pupil is off roll when it falls due"
    outreach = register_removal.plan(due("register_removal", MONDAY), DueFacts(), school(), who,
                                     at(MONDAY, 10))
    assert [r.ref for r in outreach.professionals] == refs
