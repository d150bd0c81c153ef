"""docs/rules.md "ehcp_absence_15_days": the DfE guide for parents: "if your child has an
Education, Health and Care plan, and is out of school for more than 15 days … inform the local
council". Days are counted as two sessions each."""

from __future__ import annotations

import datetime as dt

from triage.rules.decisions import Decision, Schedule, key
from triage.rules.professional import staff_details
from triage.rules.recipients import authority_of, local_authority
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RateFacts, Rule, RuleState
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "ehcp_absence_15_days"


def decide(facts: RateFacts) -> Decision | None:
    if not facts.pupil.ehcp:
        return None
    days_absent = facts.counts.absent / 2
    limit = facts.policy.ehcp_absence_days
    if days_absent <= limit:
        return None
    dedup = key(ID, facts.school_urn, facts.pupil.id, facts.year_start.year)  # pupil + year
    return Schedule(ID, dedup, facts.now,
                    f"pupil with an EHCP absent for {days_absent:g} school days this year "
                    f"(more than {limit})",
                    {"absent_sessions": facts.counts.absent,
                     "year_start": facts.year_start.isoformat()})


def _on_rates(facts: RateFacts, state: RuleState) -> tuple[RuleState, Decision | None]:
    return state, decide(facts)  # the year in the key is all it remembers


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    counts = facts.year_counts
    return Outreach(professionals=local_authority(school.urn, authority_of(school.document),
                                                  "send_team"),
                    staff_details={**({"days_absent": counts.absent / 2} if counts else {}),
                                   **staff_details(ID, due.date, school, facts.year_outreach)},
                    episode_start=due.episode_start)


RULE = Rule(id=ID, on_rates=_on_rates, plan=plan,
            needs=frozenset({Need.YEAR_COUNTS, Need.YEAR_OUTREACH}))
