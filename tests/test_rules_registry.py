"""The rule registry (`triage.rules.RULES`) against docs/rules.md: every rule there is one
entry here, and what stops each rule or makes it reach a family is what the policy says.
Also `family_unreachable`, the rule that stands in for another's family message. Pure."""

from __future__ import annotations

import pathlib
import re

import pytest
from triage.rules import ALL_RULES, FAMILY_RULES, RULES, family_unreachable, rule_named
from triage.rules.recipients import COURT_ORDER, NO_ADDRESS
from triage.school_document import SocialWorker

from tests.rule_facts import MONDAY, WORKER, due, pupil, school

RULES_MD = (pathlib.Path(__file__).parents[1] / "docs" / "rules.md").read_text()


def _ids(attribute: str) -> set[str]:
    return {rule.id for rule in RULES if getattr(rule, attribute)}


def test_every_rule_in_the_policy_table_is_one_entry_of_the_registry() -> None:
    table = re.findall(r"^\| \[(\w+)\]\(#\1\) \|", RULES_MD, flags=re.MULTILINE)
    assert list(ALL_RULES) == table, "docs/rules.md \"The rules\" table, in its order"
    assert len(set(ALL_RULES)) == len(RULES)
    assert all(rule_named(rule.id) is rule for rule in RULES)
    assert rule_named("no_such_rule") is None


@pytest.mark.parametrize(("attribute", "ids"), [
    pytest.param("stopped_by_reply", {"first_day_contact", "day3_home_visit"},
                 id="Replies: stops further chasing; a day3_home_visit is not created once a "
                    "parent has replied"),
    pytest.param("must_reach_family",
                 {"first_day_contact", "attendance_stage1", "persistent_absence"},
                 id="family_unreachable, Which contacts: first_day_contact, attendance_stage1 "
                    "and persistent_absence (the weekly update is opt-in information)"),
    pytest.param("family", {"first_day_contact", "attendance_stage1", "persistent_absence",
                            "attendance_update"}, id="the rules whose recipients are parents"),
    pytest.param("recalled_after_request",
                 {"first_day_contact", "social_worker_unexplained", "looked_after_unexplained"},
                 id="Amendments: re-coding an N takes back what was already handed over"),
    pytest.param("acts_off_roll", {"register_removal"},
                 id="register_removal: every other pending action is cancelled"),
])
def test_what_each_rule_is_stopped_by_or_must_do(attribute: str, ids: set[str]) -> None:
    assert _ids(attribute) == ids


def test_family_rules_list_in_registry_order() -> None:
    assert FAMILY_RULES == ("first_day_contact", "attendance_stage1", "persistent_absence",
                            "attendance_update")


def test_every_rule_that_is_scheduled_has_a_send_time_planner() -> None:
    # Raised at once from what the notifier reports, never scheduled: no send-time re-check.
    assert {rule.id for rule in RULES if rule.plan is None} == {
        "family_unreachable", "family_opted_out", "parked_marks_expiring"}


UNREACHABLE = [
    pytest.param([], "no parent or carer contacts",
                 id="the pupil has no contacts"),
    pytest.param([{"ref": "P1/contact/1", "why": COURT_ORDER}], "no_contact",
                 id="every contact is no_contact"),
    pytest.param([{"ref": "P1/contact/1", "why": NO_ADDRESS}], "no usable phone",
                 id="no contact has a usable number or address"),
]


@pytest.mark.parametrize(("skipped", "why"), UNREACHABLE)
def test_family_unreachable_raised_by_triage_says_why(skipped: list[dict[str, str]],
                                                      why: str) -> None:
    """Recipients: the attendance officer (email and a task) and, where the pupil has one, the
    social worker. Triage raises it when no contact can be used at all, saying why."""
    raised = family_unreachable.raised(due("first_day_contact", MONDAY), school(),
                                       pupil(social_worker=SocialWorker(**WORKER)), skipped)
    assert why in raised.why and why in raised.task.detail
    assert raised.task.kind == "family_unreachable" and raised.task.day == MONDAY
    assert [r.role for r in raised.alerted] == ["attendance_officer", "social_worker"]
    assert raised.details["about_rule"] == "first day contact"


def test_family_unreachable_reported_by_the_notifier_says_how_many_were_tried() -> None:
    task, reason = family_unreachable.reported("persistent_absence", 3, MONDAY)
    assert "3 contact(s) tried" in task.detail and "3 contact(s) tried" in reason
    assert family_unreachable.dedup_key("123456", "P1", MONDAY, "persistent_absence") == (
        "family_unreachable:123456:P1:2026-11-23:persistent_absence"), "pupil + date + rule"
