"""docs/rules.md "severe_absence": the absence rate crosses `severe_at` (default 50%). The DfE
summary of responsibilities: "all services should make this group the top priority", so the
officer, the safeguarding lead, the local authority and the social worker all hear."""

from __future__ import annotations

from triage.policy import Policy
from triage.rules.recipients import authority_of, local_authority, social_worker
from triage.rules.rule import DueAction, Outreach
from triage.rules.thresholds import Threshold, crossing_rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "severe_absence"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "absence_at", policy.severe_at)


def recipients(due: DueAction, school: SchoolContext, pupil: Pupil) -> Outreach:
    return Outreach(
        professionals=[*school.staff_recipients("attendance_officer"),
                       *school.staff_recipients("dsl"),
                       *local_authority(school.urn, authority_of(school.document),
                                        "local_authority"),
                       *social_worker(pupil)])


RULE = crossing_rule(ID, threshold, recipients)
