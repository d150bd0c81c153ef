"""Who a rule's message goes to (docs/rules.md "The rules" recipients, "Contact order"). Pure:
built from the school document and the pupil's roster record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from broker_messages.contact import Channel, Recipient

from triage.school_document import Contact, LocalAuthority, Pupil, is_landline

# Why a contact was not included, as the decision log and the timeline show it.
COURT_ORDER = "may not be contacted (no_contact, e.g. a court order)"
NO_ADDRESS = "no usable phone number or email address for this message"
NOT_OPTED_IN = "did not ask for attendance updates"
LANDLINE = "landline: no text message; a voice call instead"


def _channels_for(contact: Contact, channels: tuple[Channel, ...]) -> tuple[Channel, ...]:
    """The channels the contact has an address for. A landline cannot take a text: its SMS
    becomes a voice call (once, in the SMS's place)."""
    usable: list[Channel] = []
    for channel in channels:
        if channel == "email":
            wanted: Channel | None = "email" if contact.email else None
        elif not contact.phone:
            wanted = None
        else:
            wanted = "voice" if channel == "sms" and is_landline(contact.phone) else channel
        if wanted is not None and wanted not in usable:
            usable.append(wanted)
    return tuple(usable)


def family_recipients(
    pupil_id: str, contacts: Sequence[Contact], channels: tuple[Channel, ...],
    *, opted_in_only: bool = False,
) -> tuple[list[Recipient], list[dict[str, str]]]:
    """docs/rules.md "Contact order": parent/carers in priority order, each with the channels
    they have an address for. `no_contact` contacts (e.g. a court order) are never included,
    not even as a fallback; every contact left out is returned with why, for the record.
    `opted_in_only`: only contacts who asked for attendance updates."""
    recipients: list[Recipient] = []
    skipped: list[dict[str, str]] = []
    for contact in sorted(contacts, key=lambda c: c.priority):
        ref = f"{pupil_id}/contact/{contact.priority}"
        usable = _channels_for(contact, channels)
        why = (COURT_ORDER if contact.no_contact else NO_ADDRESS if not usable
               else NOT_OPTED_IN if opted_in_only and not contact.attendance_updates
               else None)
        if why is not None:
            skipped.append({"ref": ref, "why": why})
            continue
        if "sms" in channels and contact.phone and is_landline(contact.phone):
            # Not left out, but the record says why this contact is not texted.
            skipped.append({"ref": ref, "channel": "sms", "why": LANDLINE})
        recipients.append(Recipient(
            role="parent", ref=ref, name=contact.name, phone=contact.phone, email=contact.email,
            language=contact.language or "en", channels=usable,
        ))
    return recipients, skipped


def unreachable_because(skipped: list[dict[str, str]]) -> str:
    """Why nobody in a family can be contacted, in a sentence for the attendance officer."""
    left_out = [entry for entry in skipped if "channel" not in entry]
    if not left_out:
        return "the pupil has no parent or carer contacts on the roster"
    reasons = sorted({entry["why"] for entry in left_out})
    return f"no contact can be used: {'; '.join(reasons)}"


def channel_notes(skipped: list[dict[str, str]]) -> str:
    """Channels left out for contacts still contacted (a landline's SMS), for a decision's
    reason: "" when there are none."""
    notes = [f"{entry['ref']}: {entry['why']}" for entry in skipped if "channel" in entry]
    return f" ({'; '.join(notes)})" if notes else ""


def first_contact_address(recipient: Recipient) -> str:
    """Who a family message reaches first: siblings whose first contact has the same phone
    (or, without one, email) share one message (docs/rules.md "Siblings")."""
    return recipient.phone or recipient.email or recipient.ref


def social_worker(pupil: Pupil) -> list[Recipient]:
    worker = pupil.social_worker
    if worker is None or not worker.email:
        return []
    return [Recipient(role="social_worker", ref=f"{pupil.id}/social_worker", name=worker.name,
                      email=worker.email, phone=worker.phone, channels=("email",))]


Team = Literal["local_authority", "send_team", "virtual_school"]
_TEAMS: dict[Team, tuple[str, str]] = {  # team -> (address field, name)
    "local_authority": ("attendance_team_email", "Attendance team"),
    "send_team": ("send_team_email", "SEND team"),
    "virtual_school": ("virtual_school_email", "Virtual School"),
}


def authority_of(document: Mapping[str, Any]) -> LocalAuthority | None:
    """The school document's local authority, typed (the stored document was validated on
    upload)."""
    found = document.get("local_authority")
    return LocalAuthority.model_validate(found) if found else None


def local_authority(school_urn: str, authority: LocalAuthority | None,
                    team: Team) -> list[Recipient]:
    """The local authority's attendance team, SEND team or Virtual School (by email)."""
    if authority is None:
        return []
    address, name = _TEAMS[team]
    email: str | None = getattr(authority, address)
    if not email:
        return []
    role: Literal["virtual_school", "local_authority"] = (
        "virtual_school" if team == "virtual_school" else "local_authority")
    return [Recipient(role=role, ref=f"{school_urn}/la/{team}", name=f"{authority.name} {name}",
                      email=email, channels=("email",))]
