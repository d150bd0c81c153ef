"""docs/rules.md "attendance_stage1": attendance crosses below `stage1_below` (default 92%);
the example school policy §11, stage 1: the class teacher has an informal chat with the parent.
The parent gets an attendance update with the rate (no blame), the officer an email."""

from __future__ import annotations

import datetime as dt

from triage.policy import Policy
from triage.rules.decisions import Decision
from triage.rules.recipients import family_recipients
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.rules.thresholds import Threshold, crossing, rate_details, still_crossed
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "attendance_stage1"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "attendance_below", policy.stage1_below)


def decide(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
    return crossing(threshold(facts.policy), facts, state)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    counts = still_crossed(threshold(school.policy), facts)
    if isinstance(counts, Outreach):
        return counts
    family, skipped = family_recipients(due.pupil_id, pupil.contacts, ("sms",))
    return Outreach(family=family, skipped=skipped,
                    professionals=school.staff_recipients("attendance_officer"),
                    details=rate_details(counts))


RULE = Rule(id=ID, on_rates=decide, state_scope="year", plan=plan,
            needs=frozenset({Need.YEAR_COUNTS}), family=True, must_reach_family=True)
