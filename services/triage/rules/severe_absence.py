"""docs/rules.md "severe_absence": the absence rate crosses `severe_at` (default 50%). The DfE
summary of responsibilities: "all services should make this group the top priority", so the
officer, the safeguarding lead, the local authority and the social worker all hear."""

from __future__ import annotations

import datetime as dt

from triage.policy import Policy
from triage.rules.decisions import Decision
from triage.rules.recipients import authority_of, local_authority, social_worker
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.rules.thresholds import Threshold, crossing, rate_details, still_crossed
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "severe_absence"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "absence_at", policy.severe_at)


def decide(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
    return crossing(threshold(facts.policy), facts, state)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    counts = still_crossed(threshold(school.policy), facts)
    if isinstance(counts, Outreach):
        return counts
    return Outreach(
        professionals=[*school.staff_recipients("attendance_officer"),
                       *school.staff_recipients("dsl"),
                       *local_authority(school.urn, authority_of(school.document),
                                        "local_authority"),
                       *social_worker(pupil)],
        details=rate_details(counts))


RULE = Rule(id=ID, on_rates=decide, state_scope="year", plan=plan,
            needs=frozenset({Need.YEAR_COUNTS}))
