"""docs/rules.md "looked_after_unexplained": as `social_worker_unexplained`, for a looked-after
child, to the Virtual School of the local authority (the DfE summary of responsibilities,
looked-after children: the Virtual School Head's role)."""

from __future__ import annotations

import datetime as dt

from triage.rules.decisions import Decision
from triage.rules.recipients import authority_of, local_authority
from triage.rules.rule import DayFacts, DueAction, DueFacts, Outreach, Rule
from triage.rules.social_worker_unexplained import (
    ALERT_NEEDS,
    alert_details,
    unexplained_alert,
    unexplained_still_due,
)
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "looked_after_unexplained"


def decide(facts: DayFacts) -> Decision | None:
    if not facts.pupil.looked_after:
        return None
    return unexplained_alert(ID, facts, "who is looked after")


def plan(due: DueAction, facts: DueFacts, school: SchoolContext, pupil: Pupil,
         now: dt.datetime) -> Outreach:
    reason = unexplained_still_due(facts)
    if reason:
        return Outreach(cancel=reason)
    # The social worker hears through `social_worker_unexplained`.
    return Outreach(professionals=local_authority(school.urn, authority_of(school.document),
                                                  "virtual_school"),
                    details=alert_details(due, facts, school))


RULE = Rule(id=ID, on_day=decide, plan=plan, needs=ALERT_NEEDS,
            recalled_after_request=True)
