"""docs/rules.md "attendance_stage1": attendance crosses below `stage1_below` (default 92%);
the example school policy §11, stage 1: the class teacher has an informal chat with the parent.
The parent gets an attendance update with the rate (no blame), the officer an email."""

from __future__ import annotations

from triage.policy import Policy
from triage.rules.recipients import family_recipients
from triage.rules.rule import DueAction, Outreach
from triage.rules.thresholds import Threshold, crossing_rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "attendance_stage1"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "attendance_below", policy.stage1_below)


def recipients(due: DueAction, school: SchoolContext, pupil: Pupil) -> Outreach:
    family, skipped = family_recipients(due.pupil_id, pupil.contacts, ("sms",))
    return Outreach(family=family, skipped=skipped,
                    professionals=school.staff_recipients("attendance_officer"))


RULE = crossing_rule(ID, threshold, recipients, family=True)
