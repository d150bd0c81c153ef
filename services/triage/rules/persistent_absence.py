"""docs/rules.md "persistent_absence": the absence rate crosses `persistent_at` (default 10%).
The example school policy §4.2: parents are told at once, and "all PA cases are also
automatically made known to the County Attendance team" (`persistent_absence.inform_la`)."""

from __future__ import annotations

from triage.policy import Policy
from triage.rules.recipients import authority_of, family_recipients, local_authority
from triage.rules.rule import DueAction, Outreach
from triage.rules.thresholds import Threshold, crossing_rule
from triage.school_document import Pupil
from triage.schools import SchoolContext

ID = "persistent_absence"


def threshold(policy: Policy) -> Threshold:
    return Threshold(ID, "absence_at", policy.persistent_at)


def recipients(due: DueAction, school: SchoolContext, pupil: Pupil) -> Outreach:
    family, skipped = family_recipients(due.pupil_id, pupil.contacts, ("sms", "email"))
    professionals = school.staff_recipients("attendance_officer")
    if school.policy.persistent_absence.inform_la:
        # At 10%, whether or not attendance is below the referral line yet.
        professionals += local_authority(school.urn, authority_of(school.document),
                                         "local_authority")
    return Outreach(family=family, skipped=skipped, professionals=professionals)


RULE = crossing_rule(ID, threshold, recipients, family=True)
