"""Composing stored notifications for one recipient of a contact request: rendered, addressed
and given a due time (held past quiet hours when docs/rules.md "Contacting people" says so)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal
from zoneinfo import ZoneInfo

from broker_messages.contact import Channel, ContactRequest, FollowOn, Recipient, follow_on_id

from notifier.quiet_hours import next_send_time
from notifier.templates import Rendered, TemplateLibrary

Kind = Literal["recipient", "family", "unreachable"]
UNREACHABLE_RULE = "family_unreachable"


def is_held_by_quiet_hours(request: ContactRequest, recipient: Recipient, channel: Channel) -> bool:
    """docs/rules.md "Contacting people": no SMS or call inside quiet hours or on non-school days, unless the rule is a
    safeguarding alert to professionals. Email waits for nobody."""
    if channel == "email":
        return False
    return recipient.role == "parent" or not request.safeguarding


def follow_on_request(request: ContactRequest, follow_on: FollowOn) -> ContactRequest:
    """One child's own chain after a carer shared with siblings was not reached: the request
    naming only that child, with that child's contacts and social worker."""
    pupil_id = follow_on.pupil_id
    return request.model_copy(update={
        "request_id": follow_on_id(request.request_id, pupil_id),
        "pupils": tuple(p for p in request.pupils if p.pupil_id == pupil_id),
        "family": follow_on.family, "follow_on": (),
        "unreachable": tuple(r for r in request.unreachable if r.role != "social_worker"
                             or r.ref.startswith(f"{pupil_id}/")),
    })


def notification_rows(
    templates: TemplateLibrary, request: ContactRequest, recipient: Recipient, *, kind: Kind,
    now: dt.datetime, family_index: int | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for channel in recipient.channels:
        to = recipient.email if channel == "email" else recipient.phone
        if not to:
            raise ValueError(f"recipient {recipient.ref} has no address for {channel}")
        due = (next_send_time(now, request.delivery)
               if is_held_by_quiet_hours(request, recipient, channel) else now)
        rule = request.rule
        ref = recipient.ref
        if kind == "unreachable":
            rule, ref = UNREACHABLE_RULE, f"unreachable:{recipient.ref}"
            rendered = render_unreachable(templates, request, recipient, channel)
        else:
            # Rendered knowing when it goes out: a text held to tomorrow names the day.
            rendered = templates.render_request(request, recipient, channel, due)
        rows.append({
            "id": str(uuid.uuid4()),
            "request_id": request.request_id,
            "rule": rule,
            "school_urn": request.school.urn,
            "pupil_ids": [p.pupil_id for p in request.pupils],
            "recipient_role": recipient.role,
            "recipient_ref": ref,
            "channel": channel,
            "to": to,
            "subject": rendered.subject,
            "body": rendered.body,
            "html": rendered.html,
            "status": "pending",
            "attempts": 0,
            "due_at": due,
            "created_at": now,
            "updated_at": now,
            "kind": kind,
            "family_index": family_index,
            "language": recipient.language,
            "note": _held_note(due, now, request),
            "sender_name": request.school.name if channel == "email" else None,
        })
    return rows


def _held_note(due: dt.datetime, now: dt.datetime, request: ContactRequest) -> str | None:
    """Staff see why a message waits: quiet hours, or a day that is not a school day."""
    if due <= now:
        return None
    local = due.astimezone(ZoneInfo(request.delivery.timezone))
    return f"held for quiet hours or a non-school day until {local:%a %d %b %H:%M}"


def render_unreachable(templates: TemplateLibrary, request: ContactRequest, recipient: Recipient,
                       channel: Channel) -> Rendered:
    """The attendance officer's alert: which pupils, about what, how many contacts failed and
    whom at the school to call (the first officer alerted), in the same `details` keys as
    triage's own `family_unreachable` request."""
    context = templates.context(request, recipient)
    officers = [r.name for r in request.unreachable if r.role == "attendance_officer"]
    context["details"] = {**context["details"], "about_rule_id": request.rule,
                          "contacts_tried": len(request.family),
                          **({"school_contact": officers[0]} if officers else {})}
    return templates.render(UNREACHABLE_RULE, channel, recipient.language, context)
