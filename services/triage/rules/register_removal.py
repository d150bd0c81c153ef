"""docs/rules.md "register_removal": the DfE summary of responsibilities asks that the social
worker is told "if their name is to be deleted from the register"; the local authority is told
of every removal (the Registration Regulations)."""

from __future__ import annotations

import datetime as dt

from triage.rules.decisions import Decision, Schedule, key
from triage.rules.professional import staff_details
from triage.rules.recipients import authority_of, local_authority, social_worker
from triage.rules.rule import DueAction, DueFacts, Need, Outreach, RemovalFacts, Rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "register_removal"


def decide(facts: RemovalFacts) -> Decision:
    dedup = key(ID, facts.school_urn, facts.pupil_id, facts.removed_on)  # pupil + removal
    # The ground is office free text: kept in the decision log, never put in a message.
    return Schedule(ID, dedup, facts.now, "pupil removed from the register",
                    {"removed_on": facts.removed_on.isoformat(), "ground": facts.ground or ""})


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    return Outreach(professionals=[
        *social_worker(pupil),
        *local_authority(school.urn, authority_of(school.document), "local_authority"),
    ], staff_details=staff_details(ID, due.date, school, facts.year_outreach))


# The pupil is off roll by the time this is due: that is the point.
RULE = Rule(id=ID, on_removal=decide, plan=plan, acts_off_roll=True,
            needs=frozenset({Need.YEAR_OUTREACH}))
