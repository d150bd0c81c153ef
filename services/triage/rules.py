"""The attendance rules (rules.md §3) as pure functions of (state, event, policy, now).

No I/O here: each function takes what the rule needs to know and returns decisions, so it can
be read line by line against the policy and tested without a broker or a database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from broker_messages.codes import UNEXPLAINED, is_absence
from broker_messages.contact import Channel, Recipient
from servicekit.clock import at_local_time, local_date

from triage.calendar import SchoolCalendar
from triage.policy import Policy

FIRST_DAY_CONTACT = "first_day_contact"


@dataclass(frozen=True)
class Schedule:
    """Act at `due_at` (after re-checking the facts then)."""

    rule: str
    dedup_key: str
    due_at: dt.datetime
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suppress:
    """The rule matched but must not contact anybody; recorded with its reason."""

    rule: str
    dedup_key: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Withdraw:
    """Whatever this rule scheduled under `dedup_key` no longer applies."""

    rule: str
    dedup_key: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


Decision = Schedule | Suppress | Withdraw


def first_day_contact_key(school_urn: str, pupil_id: str, day: dt.date) -> str:
    # rules.md §3: dedup key "pupil + date".
    return f"{FIRST_DAY_CONTACT}:{school_urn}:{pupil_id}:{day.isoformat()}"


def is_unexplained(codes: Mapping[str, str]) -> bool:
    return UNEXPLAINED in codes.values()


def is_stale(day: dt.date, now: dt.datetime, calendar: SchoolCalendar, policy: Policy,
             tz: ZoneInfo) -> bool:
    """rules.md §3 "Stale marks": older than `max_action_age_days` school days contact nobody."""
    today = local_date(now, tz)
    return calendar.school_days_between(day, today) > policy.max_action_age_days


def first_day_contact(
    *,
    school_urn: str,
    pupil_id: str,
    day: dt.date,
    codes: Mapping[str, str],
    previous_school_day_codes: Mapping[str, str],
    calendar: SchoolCalendar,
    policy: Policy,
    now: dt.datetime,
    tz: ZoneInfo,
) -> Decision | None:
    """Seed 003 §5: "telephone or text you on the first day of absence if we have not heard
    from you". Decided when a mark arrives; `first_day_contact_still_due` re-checks at send time.
    """
    key = first_day_contact_key(school_urn, pupil_id, day)
    inputs = {"date": day.isoformat(), "codes": dict(codes)}
    if not is_unexplained(codes):
        return Withdraw(FIRST_DAY_CONTACT, key, f"re-coded {_describe(codes)}: no longer unexplained",
                        inputs)
    if not calendar.is_school_day(day):
        return Suppress(FIRST_DAY_CONTACT, key, "mark is for a day that is not a school day", inputs)
    if any(is_absence(code) for code in previous_school_day_codes.values()):
        # The episode began on an earlier school day, so this is not its first day.
        return None
    if is_stale(day, now, calendar, policy, tz):
        return Suppress(
            FIRST_DAY_CONTACT, key,
            f"stale mark: more than {policy.max_action_age_days} school day(s) old", inputs,
        )
    rule_policy = policy.first_day_contact
    due_at = at_local_time(day, rule_policy.not_before, tz) + dt.timedelta(
        minutes=rule_policy.grace_minutes
    )
    return Schedule(
        FIRST_DAY_CONTACT, key, due_at,
        f"unexplained absence on the first day of an episode; contact at {due_at.isoformat()}",
        inputs,
    )


def first_day_contact_still_due(
    *,
    day: dt.date,
    codes: Mapping[str, str],
    on_roll: bool,
    calendar: SchoolCalendar,
    policy: Policy,
    now: dt.datetime,
    tz: ZoneInfo,
) -> str | None:
    """The send-time re-check; returns why the contact must not go, or None if it must."""
    if not on_roll:
        return "pupil is no longer on roll"
    if not is_unexplained(codes):
        return f"re-coded {_describe(codes)} before the contact was due"
    if is_stale(day, now, calendar, policy, tz):
        return "the contact is overdue by more than max_action_age_days: too late to send"
    return None


def family_recipients(
    pupil_id: str, contacts: list[Mapping[str, Any]], channels: tuple[Channel, ...]
) -> tuple[list[Recipient], list[str]]:
    """rules.md §4 "Contact order": parent/carers in priority order, each with the channels
    they have an address for. `no_contact` contacts (e.g. a court order) are never included,
    not even as a fallback; they are returned so the decision records that they were skipped."""
    recipients: list[Recipient] = []
    skipped: list[str] = []
    for contact in sorted(contacts, key=lambda c: int(c["priority"])):
        ref = f"{pupil_id}/contact/{contact['priority']}"
        usable: tuple[Channel, ...] = tuple(
            channel
            for channel in channels
            if (contact.get("email") if channel == "email" else contact.get("phone"))
        )
        if contact.get("no_contact") or not usable:
            skipped.append(ref)
            continue
        recipients.append(Recipient(
            role="parent",
            ref=ref,
            name=str(contact["name"]),
            phone=contact.get("phone"),
            email=contact.get("email"),
            language=str(contact.get("language") or "en"),
            channels=usable,
        ))
    return recipients, skipped


def _describe(codes: Mapping[str, str]) -> str:
    return ", ".join(f"{session} {code}" for session, code in sorted(codes.items()))
