"""docs/rules.md "la_referral": attendance crosses below `referral_below` (default 90%); the
example school policy §5: "refer … to the County Attendance team if attendance moves below
90%". The local authority gets the pupil's summary (the rates and possible sessions)."""

from __future__ import annotations

from triage.policy import Policy
from triage.rules.recipients import authority_of, local_authority
from triage.rules.rule import DueAction, Outreach
from triage.rules.thresholds import Threshold, crossing_rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "la_referral"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "attendance_below", policy.referral_below)


def recipients(due: DueAction, school: SchoolContext, pupil: Pupil) -> Outreach:
    return Outreach(
        professionals=local_authority(school.urn, authority_of(school.document),
                                      "local_authority"))


RULE = crossing_rule(ID, threshold, recipients)
