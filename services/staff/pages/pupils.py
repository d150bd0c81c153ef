"""A pupil's page: one timeline of marks, decisions, messages, replies, tasks and notes;
every view logged."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from staff.pages.common import (
    CurrentUser,
    may_see_pupil,
    pupil_or_404,
    render,
    rule_name,
    staff_app,
)

router = APIRouter()


@router.get("/pupils/{urn}/{pupil_id}")
async def pupil_link(urn: str, pupil_id: str, user: CurrentUser,
                     date: dt.date | None = None) -> Response:
    """The link in a social worker's alert email: it opens the pupil's page after sign-in."""
    suffix = f"?date={date}" if date else ""
    return RedirectResponse(f"/schools/{urn}/pupils/{quote(pupil_id)}{suffix}",
                            status_code=303)


@router.get("/schools/{urn}/pupils/{pupil_id}", response_class=HTMLResponse)
async def pupil_page(request: Request, urn: str, pupil_id: str, user: CurrentUser,
                     date: dt.date | None = None) -> HTMLResponse:
    await may_see_pupil(request, user, urn, pupil_id)
    staff = staff_app(request)
    pupil = await pupil_or_404(request, urn, pupil_id)
    timeline = await staff.backend.timeline(urn, pupil_id)
    messages = await staff.backend.notifications(urn, pupil_id=pupil_id)
    replies = await staff.backend.replies(urn, pupil_id=pupil_id)
    notes = await staff.views.notes(urn, pupil_id)
    # Every view of a child's record is logged (who, when, which pupil).
    await staff.views.record(user, "viewed", urn, pupil_id, staff.clock.now())
    return render(request, "pupil.html", user, urn=urn, pupil=pupil, timeline=timeline,
                  messages=messages, replies=replies, notes=notes, date=date,
                  events=_events(timeline, messages, replies, notes))


def _events(timeline: dict[str, Any], messages: list[dict[str, Any]],
            replies: list[dict[str, Any]], notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One list in time order: marks received, decisions, tasks, messages, replies, notes."""
    events: list[dict[str, Any]] = []
    for mark in timeline.get("mark_history", []):
        events.append({"at": mark.get("received_at") or mark.get("recorded_at"), "kind": "Mark",
                       "text": f"{mark.get('date')} {mark.get('session')}: "
                               f"{mark.get('code') or mark.get('stored_as')}"
                               + (f" (from {mark['source']})" if mark.get("source") else "")
                               + ("" if mark.get("current", True) else " — replaced")})
    for decision in timeline.get("decisions", []):
        events.append({"at": decision.get("decided_at"), "kind": "Decision",
                       "text": f"{rule_name(str(decision.get('rule')))}: "
                               f"{decision.get('outcome')} — "
                               f"{decision.get('reason')}"})
    for task in timeline.get("tasks", []):
        events.append({"at": task.get("created_at"), "kind": "Task",
                       "text": f"{rule_name(str(task.get('kind')))} ({task.get('status')})"
                               + (f": {task['outcome']}" if task.get("outcome") else "")})
    for message in messages:
        events.append({"at": message["created_at"], "kind": "Message",
                       "text": f"{message['channel']} to {message['recipient_role']}: "
                               f"{message['status']}", "body": message.get("body"),
                       "note": message.get("note")})
    for reply in replies:
        events.append({"at": reply["received_at"], "kind": "Reply", "text": reply["body"]})
    for note in notes:
        events.append({"at": note["created_at"].isoformat(), "kind": "Note",
                       "text": f"{note['author_name']}: {note['body']}"})
    return sorted(events, key=lambda e: str(e["at"] or ""), reverse=True)
