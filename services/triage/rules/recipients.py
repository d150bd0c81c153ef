"""Who a rule's message goes to (docs/rules.md "The rules" recipients, §4 contact order). Pure: built from
the school document and the pupil's roster record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker_messages.contact import Channel, Recipient

# Why a contact was not included, as the decision log and the timeline show it.
COURT_ORDER = "may not be contacted (no_contact, e.g. a court order)"
NO_ADDRESS = "no usable phone number or email address for this message"
NOT_OPTED_IN = "did not ask for attendance updates"


def family_recipients(
    pupil_id: str, contacts: list[Mapping[str, Any]], channels: tuple[Channel, ...],
    *, opted_in_only: bool = False,
) -> tuple[list[Recipient], list[dict[str, str]]]:
    """docs/rules.md "Contact order": parent/carers in priority order, each with the channels
    they have an address for. `no_contact` contacts (e.g. a court order) are never included,
    not even as a fallback; every contact left out is returned with why, for the record.
    `opted_in_only`: only contacts who asked for attendance updates."""
    recipients: list[Recipient] = []
    skipped: list[dict[str, str]] = []
    for contact in sorted(contacts, key=lambda c: int(c["priority"])):
        ref = f"{pupil_id}/contact/{contact['priority']}"
        usable: tuple[Channel, ...] = tuple(
            channel
            for channel in channels
            if (contact.get("email") if channel == "email" else contact.get("phone"))
        )
        why = (COURT_ORDER if contact.get("no_contact") else NO_ADDRESS if not usable
               else NOT_OPTED_IN if opted_in_only and not contact.get("attendance_updates")
               else None)
        if why is not None:
            skipped.append({"ref": ref, "why": why})
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


def unreachable_because(skipped: list[dict[str, str]]) -> str:
    """Why nobody in a family can be contacted, in a sentence for the attendance officer."""
    if not skipped:
        return "the pupil has no parent or carer contacts on the roster"
    reasons = sorted({entry["why"] for entry in skipped})
    return f"no contact can be used: {'; '.join(reasons)}"


def first_contact_address(recipient: Recipient) -> str:
    """Who a family message reaches first: siblings whose first contact has the same phone
    (or, without one, email) share one message (docs/rules.md "Siblings")."""
    return recipient.phone or recipient.email or recipient.ref


def social_worker(pupil_id: str, record: Mapping[str, Any]) -> list[Recipient]:
    worker = record.get("social_worker")
    if not worker or not worker.get("email"):
        return []
    return [Recipient(role="social_worker", ref=f"{pupil_id}/social_worker", name=worker["name"],
                      email=worker["email"], phone=worker.get("phone"), channels=("email",))]


_LA_ADDRESSES = {
    "local_authority": "attendance_team_email",
    "send_team": "send_team_email",
    "virtual_school": "virtual_school_email",
}


def local_authority(school_urn: str, document: Mapping[str, Any], team: str) -> list[Recipient]:
    """The local authority's attendance team, SEND team or Virtual School (by email)."""
    authority = document.get("local_authority") or {}
    email = authority.get(_LA_ADDRESSES[team])
    if not email:
        return []
    role = "virtual_school" if team == "virtual_school" else "local_authority"
    names = {"local_authority": "Attendance team", "send_team": "SEND team",
             "virtual_school": "Virtual School"}
    return [Recipient(role=role, ref=f"{school_urn}/la/{team}",
                      name=f"{authority.get('name', 'Local authority')} {names[team]}",
                      email=email, channels=("email",))]
