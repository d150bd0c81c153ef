"""What the Today screen says about each absent pupil's contact: the furthest point their
family's contact has reached, from triage's actions and the notifier's messages and replies.

Pure functions of what the services returned, so the screen's wording is tested without a
browser."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

# Rules that contact the family about an absence today (docs/rules.md).
FAMILY_RULES = frozenset({"first_day_contact", "attendance_stage1", "persistent_absence"})


@dataclass(frozen=True)
class State:
    key: str  # a stable word for tests and CSS: scheduled, held, sent, ...
    label: str  # what a person reads
    attention: bool = False  # needs a person now


@dataclass
class PupilContact:
    state: State
    replies: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


def _time(value: str | None) -> str:
    if not value:
        return ""
    return dt.datetime.fromisoformat(value).astimezone(LONDON).strftime("%H:%M")


def _message_state(rows: list[dict[str, Any]], now: dt.datetime) -> State | None:
    statuses = {row["status"] for row in rows}
    if "delivered" in statuses:
        return State("delivered", "Delivered")
    if "sent" in statuses:
        return State("sent", "Sent")
    if "written" in statuses:
        # No SMS or email provider is configured: the family has not been told.
        return State("written", "Not sent: written to the local outbox", attention=True)
    pending = [row for row in rows if row["status"] == "pending"]
    if pending:
        due = min(row.get("due_at") or row["created_at"] for row in pending)
        if dt.datetime.fromisoformat(due) > now:
            return State("held", f"Held until {_time(due)}")
        return State("sending", "Sending")
    if "suppressed" in statuses:
        return State("opted_out", "Not sent: the family opted out", attention=True)
    if statuses & {"failed", "undelivered"}:
        return State("failed", "Failed", attention=True)
    if "cancelled" in statuses:
        return State("cancelled", "Cancelled")
    return None


def _action_state(actions: list[dict[str, Any]]) -> State:
    family = [a for a in actions if a["rule"] in FAMILY_RULES]
    statuses = {a["status"] for a in family}
    if "requested" in statuses:
        return State("requested", "Handed to the sender")
    if "pending" in statuses:
        due = min(a["due_at"] for a in family if a["status"] == "pending")
        return State("scheduled", f"Scheduled for {_time(due)}")
    if "suppressed" in statuses:
        return State("no_contact", "No one may be contacted", attention=True)
    if "cancelled" in statuses:
        return State("cancelled", "Cancelled")
    return State("none", "No contact yet", attention=True)


def by_pupil(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        for pupil_id in row.get("pupil_ids", ()):
            grouped[pupil_id].append(row)
    return grouped


def contact_of(absence: dict[str, Any], messages: list[dict[str, Any]],
               replies: list[dict[str, Any]], now: dt.datetime) -> PupilContact:
    """The contact state of one absent pupil. A reply wins over everything: chasing stopped.
    A family nobody could reach (an open `family_unreachable` task) comes next."""
    family_messages = [m for m in messages if m["rule"] in FAMILY_RULES
                       and m.get("recipient_role") == "parent"]
    heard = absence.get("replies", ())
    spoken = [r for r in heard if str(r["contact_ref"]).startswith("staff:")]
    # A family's own text before we asked (docs/rules.md "Parents who tell the school first").
    told = [r for r in heard if str(r["reply_id"]).startswith("explanation:")]
    if replies:
        state = State("replied", "Parent replied")
    elif spoken:
        state = State("spoken", "Staff spoke to the family")
    elif told:
        state = State("told_first", "The family told us first")
    elif any(t["kind"] == "family_unreachable" for t in absence.get("open_tasks", ())):
        state = State("unreachable", "Unreachable: nobody answered", attention=True)
    else:
        state = _message_state(family_messages, now) or _action_state(absence.get("actions", []))
    return PupilContact(state=state, replies=replies, messages=family_messages)
