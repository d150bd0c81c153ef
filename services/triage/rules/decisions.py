"""What a rule decides, and the deduplication keys of docs/rules.md "The rules" ("a rule fires at most once
per deduplication key"). Pure values: storage is `triage.decisions`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FIRST_DAY_CONTACT = "first_day_contact"
DAY3_HOME_VISIT = "day3_home_visit"
SOCIAL_WORKER_UNEXPLAINED = "social_worker_unexplained"
LOOKED_AFTER_UNEXPLAINED = "looked_after_unexplained"
REGISTER_REMOVAL = "register_removal"
ATTENDANCE_STAGE1 = "attendance_stage1"
PERSISTENT_ABSENCE = "persistent_absence"
LA_REFERRAL = "la_referral"
SEVERE_ABSENCE = "severe_absence"
PENALTY_NOTICE_THRESHOLD = "penalty_notice_threshold"
CONTINUOUS_ABSENCE_10_DAYS = "continuous_absence_10_days"
EHCP_ABSENCE_15_DAYS = "ehcp_absence_15_days"
ATTENDANCE_UPDATE = "attendance_update"
UNEXPLAINED_NOT_RECODED = "unexplained_not_recoded"
FAMILY_UNREACHABLE = "family_unreachable"

ALL_RULES = (
    FIRST_DAY_CONTACT, DAY3_HOME_VISIT, SOCIAL_WORKER_UNEXPLAINED, LOOKED_AFTER_UNEXPLAINED,
    REGISTER_REMOVAL, ATTENDANCE_STAGE1, PERSISTENT_ABSENCE, LA_REFERRAL, SEVERE_ABSENCE,
    PENALTY_NOTICE_THRESHOLD, CONTINUOUS_ABSENCE_10_DAYS, EHCP_ABSENCE_15_DAYS, ATTENDANCE_UPDATE,
    UNEXPLAINED_NOT_RECODED, FAMILY_UNREACHABLE,
)
# Rules whose messages go to parents (docs/rules.md data minimisation, siblings, quiet hours).
FAMILY_RULES = (FIRST_DAY_CONTACT, ATTENDANCE_STAGE1, PERSISTENT_ABSENCE, ATTENDANCE_UPDATE)
# Family rules that must reach somebody: when no family contact can be, `family_unreachable`
# tells the attendance officer (and the social worker) instead. The weekly update is opt-in
# information, not a contact the school needs to make.
MUST_REACH_FAMILY = (FIRST_DAY_CONTACT, ATTENDANCE_STAGE1, PERSISTENT_ABSENCE)


@dataclass(frozen=True)
class Schedule:
    """Act at `due_at` (after re-checking the facts then)."""

    rule: str
    dedup_key: str
    due_at: dt.datetime
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    episode_start: dt.date | None = None


@dataclass(frozen=True)
class Suppress:
    """The rule matched but must not contact anybody; recorded with its reason."""

    rule: str
    dedup_key: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    episode_start: dt.date | None = None


@dataclass(frozen=True)
class Withdraw:
    """Whatever this rule scheduled under `dedup_key` no longer applies."""

    rule: str
    dedup_key: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


Decision = Schedule | Suppress | Withdraw


def key(rule: str, school_urn: str, pupil_id: str, *parts: object) -> str:
    """`rule:school:pupil:…`; the trailing parts are what docs/rules.md "The rules" names after "pupil +"."""
    tail = ":".join(p.isoformat() if isinstance(p, dt.date) else str(p) for p in parts)
    return f"{rule}:{school_urn}:{pupil_id}:{tail}"


def first_day_contact_key(school_urn: str, pupil_id: str, day: dt.date) -> str:
    # docs/rules.md "The rules": dedup key "pupil + date".
    return key(FIRST_DAY_CONTACT, school_urn, pupil_id, day)


def family_unreachable_key(school_urn: str, pupil_id: str, day: dt.date, about_rule: str) -> str:
    # docs/rules.md: dedup key "pupil + date + rule".
    return key(FAMILY_UNREACHABLE, school_urn, pupil_id, day, about_rule)
