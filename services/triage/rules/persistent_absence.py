"""docs/rules.md "persistent_absence": the absence rate crosses `persistent_at` (default 10%).
The example school policy §4.2: parents are told at once, and "all PA cases are also
automatically made known to the County Attendance team" (`persistent_absence.inform_la`)."""

from __future__ import annotations

import datetime as dt

from triage.policy import Policy
from triage.rules.decisions import Decision
from triage.rules.recipients import authority_of, family_recipients, local_authority
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.rules.thresholds import Threshold, crossing, rate_details, still_crossed
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "persistent_absence"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "absence_at", policy.persistent_at)


def decide(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
    return crossing(threshold(facts.policy), facts, state)


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    counts = still_crossed(threshold(school.policy), facts)
    if isinstance(counts, Outreach):
        return counts
    family, skipped = family_recipients(due.pupil_id, pupil.contacts, ("sms", "email"))
    professionals = school.staff_recipients("attendance_officer")
    if school.policy.persistent_absence.inform_la:
        # At 10%, whether or not attendance is below the referral line yet.
        professionals += local_authority(school.urn, authority_of(school.document),
                                         "local_authority")
    return Outreach(family=family, skipped=skipped, professionals=professionals,
                    details=rate_details(counts))


RULE = Rule(id=ID, on_rates=decide, state_scope="year", plan=plan,
            needs=frozenset({Need.YEAR_COUNTS}), family=True, must_reach_family=True)
