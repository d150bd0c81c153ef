"""docs/rules.md "la_referral": attendance crosses below `referral_below` (default 90%); the
example school policy §5: "refer … to the County Attendance team if attendance moves below
90%". The local authority gets the pupil's summary (the rates and possible sessions)."""

from __future__ import annotations

import datetime as dt

from triage.policy import Policy
from triage.rules.decisions import Decision
from triage.rules.recipients import authority_of, local_authority
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.rules.thresholds import Threshold, crossing, rate_details, still_crossed
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "la_referral"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "attendance_below", policy.referral_below)


def decide(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
    return crossing(threshold(facts.policy), facts, state)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    counts = still_crossed(threshold(school.policy), facts)
    if isinstance(counts, Outreach):
        return counts
    return Outreach(
        professionals=local_authority(school.urn, authority_of(school.document),
                                      "local_authority"),
        details=rate_details(counts))


RULE = Rule(id=ID, on_rates=decide, state_scope="year", plan=plan,
            needs=frozenset({Need.YEAR_COUNTS}))
