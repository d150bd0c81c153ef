"""The Today screen and recording what happened: a reason (a register mark through the
pipeline), "spoke to the parent", a family's own report accepted or dismissed, a private note."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from staff.access import Role, User
from staff.backend import NotFound, Rejected
from staff.contact_state import LONDON, by_pupil, contact_of
from staff.pages.common import (
    EXPLANATIONS,
    CurrentUser,
    FormUser,
    may_see_pupil,
    pupil_or_404,
    render,
    school_staff_only,
    staff_app,
)
from staff.views import MAX_NOTE

router = APIRouter()


async def _today(request: Request, urn: str, day: dt.date | None) -> dict[str, Any]:
    staff = staff_app(request)
    now = staff.clock.now()
    absences = await staff.backend.absences(urn, day)
    date = dt.date.fromisoformat(absences["date"])
    since = dt.datetime.combine(date, dt.time(0), LONDON).astimezone(dt.UTC)
    messages = by_pupil(await staff.backend.notifications(urn, since=since))
    replies = by_pupil([r for r in await staff.backend.replies(urn, since=since)
                        if r["kind"] == "reply"])
    rows = []
    for absence in absences["pupils"]:
        pupil_id = absence["pupil_id"]
        contact = contact_of(absence, messages.get(pupil_id, []), replies.get(pupil_id, []), now)
        rows.append({**absence, "contact": contact})
    return {"absences": absences, "rows": rows, "date": date, "now": now,
            "attention": sum(1 for row in rows if row["contact"].state.attention)}


@router.get("/schools/{urn}/today", response_class=HTMLResponse)
async def today_page(request: Request, urn: str, user: CurrentUser,
                     date: dt.date | None = None, done: str | None = None) -> HTMLResponse:
    school_staff_only(user, urn)
    context = await _today(request, urn, date)
    reported = await staff_app(request).backend.explanations(urn)
    return render(request, "today.html", user, urn=urn, done=done, reported=reported,
                  explanations=EXPLANATIONS, **context)


@router.get("/schools/{urn}/today/rows", response_class=HTMLResponse)
async def today_rows(request: Request, urn: str, user: CurrentUser,
                     date: dt.date | None = None) -> HTMLResponse:
    """The live part of Today, polled by htmx."""
    school_staff_only(user, urn)
    context = await _today(request, urn, date)
    return render(request, "_today_rows.html", user, urn=urn, **context)


# Recording what happened

@router.get("/schools/{urn}/pupils/{pupil_id}/record", response_class=HTMLResponse)
async def record_page(request: Request, urn: str, pupil_id: str, user: CurrentUser,
                      date: dt.date, session: str = "AM") -> HTMLResponse:
    school_staff_only(user, urn)
    pupil = await pupil_or_404(request, urn, pupil_id)
    return render(request, "record.html", user, urn=urn, pupil=pupil, date=date,
                  session=session if session in ("AM", "PM") else "AM",
                  explanations=EXPLANATIONS, problems=[])


@router.post("/schools/{urn}/pupils/{pupil_id}/recode", response_class=HTMLResponse)
async def recode(request: Request, urn: str, pupil_id: str, user: FormUser,
                 date: Annotated[dt.date, Form()], session: Annotated[str, Form()],
                 code: Annotated[str, Form()],
                 comment: Annotated[str, Form(max_length=500)] = "") -> Response:
    """"Parent phoned: illness": a register mark like any other, so the pipeline cancels
    pending contacts and the rates change. The mark names this person as its source."""
    school_staff_only(user, urn)
    staff = staff_app(request)
    pupil = await pupil_or_404(request, urn, pupil_id)
    problems = []
    if code not in EXPLANATIONS:
        problems.append("Choose what the absence was.")
    if session not in ("AM", "PM"):
        problems.append("Choose the morning or the afternoon session.")
    if not problems:
        text = f"{EXPLANATIONS[code].lower()}" + (f": {comment.strip()}" if comment.strip()
                                                  else "")
        try:
            await staff.backend.record_mark({
                "schema": "register.mark/v1", "event_id": f"staff-{uuid.uuid4().hex}",
                "school_urn": urn, "pupil_id": pupil_id, "date": date.isoformat(),
                "session": session, "code": code,
                "recorded_at": staff.clock.now().isoformat(), "comment": text[:500],
                "source": user.ref})
        except Rejected as rejected:
            problems.extend(rejected.problems)
    if problems:
        return render(request, "record.html", user, status=422, urn=urn, pupil=pupil,
                      date=date, session=session, explanations=EXPLANATIONS,
                      problems=problems)
    await staff.views.record(user, "recoded", urn, pupil_id, staff.clock.now(),
                             f"{date} {session} as {code}")
    return RedirectResponse(f"/schools/{urn}/today?date={date}&done=recorded",
                            status_code=303)


@router.post("/schools/{urn}/pupils/{pupil_id}/spoke", response_class=HTMLResponse)
async def spoke_to_parent(request: Request, urn: str, pupil_id: str, user: FormUser,
                          date: Annotated[dt.date, Form()],
                          note: Annotated[str, Form(max_length=MAX_NOTE)] = "") -> Response:
    """"Spoke to parent": chasing stops, the register code stays as it is."""
    school_staff_only(user, urn)
    staff = staff_app(request)
    try:
        await staff.backend.contact_made(urn, pupil_id, user.ref, note.strip() or None)
    except NotFound:
        raise HTTPException(404, "Not found") from None
    if note.strip():
        await staff.views.add_note(user, urn, pupil_id, note.strip(), staff.clock.now())
    await staff.views.record(user, "spoke_to_parent", urn, pupil_id, staff.clock.now())
    return RedirectResponse(f"/schools/{urn}/today?date={date}&done=spoken", status_code=303)


@router.post("/schools/{urn}/explanations/{explanation_id}/accept", response_class=HTMLResponse)
async def accept_explanation(request: Request, urn: str, explanation_id: int, user: FormUser,
                             code: Annotated[str, Form()] = "") -> Response:
    """What a family texted first, taken as the reason: triage re-codes the day's N marks."""
    school_staff_only(user, urn)
    if code not in EXPLANATIONS:
        raise HTTPException(422, "Choose what the absence was.")
    settled = await _settle_explanation(request, urn, explanation_id, user, code)
    await _audit_explanation(request, user, urn, settled, f"accepted as {code}")
    return RedirectResponse(f"/schools/{urn}/today?done=accepted", status_code=303)


@router.post("/schools/{urn}/explanations/{explanation_id}/dismiss", response_class=HTMLResponse)
async def dismiss_explanation(request: Request, urn: str, explanation_id: int,
                              user: FormUser) -> Response:
    """Not about this absence: the family is treated as not yet heard from."""
    school_staff_only(user, urn)
    settled = await _settle_explanation(request, urn, explanation_id, user, None)
    await _audit_explanation(request, user, urn, settled, "dismissed")
    return RedirectResponse(f"/schools/{urn}/today?done=dismissed", status_code=303)


async def _settle_explanation(request: Request, urn: str, explanation_id: int, user: User,
                              code: str | None) -> dict[str, Any]:
    backend = staff_app(request).backend
    try:
        if code is None:
            return await backend.dismiss_explanation(urn, explanation_id, user.ref)
        return await backend.accept_explanation(urn, explanation_id, code, user.ref)
    except NotFound:
        raise HTTPException(404, "Not found") from None
    except Rejected as rejected:
        raise HTTPException(409, " ".join(rejected.problems)) from None


async def _audit_explanation(request: Request, user: User, urn: str, settled: dict[str, Any],
                             detail: str) -> None:
    staff = staff_app(request)
    for pupil in settled["pupils"]:
        await staff.views.record(user, "explanation_settled", urn, pupil["pupil_id"],
                                 staff.clock.now(), f"explanation {settled['id']}: {detail}")


@router.post("/schools/{urn}/pupils/{pupil_id}/notes", response_class=HTMLResponse)
async def add_note(request: Request, urn: str, pupil_id: str, user: FormUser,
                   body: Annotated[str, Form(max_length=MAX_NOTE)] = "") -> Response:
    await may_see_pupil(request, user, urn, pupil_id)
    if user.role is Role.SOCIAL_WORKER or not body.strip():
        raise HTTPException(422, "Write the note first.")
    staff = staff_app(request)
    await pupil_or_404(request, urn, pupil_id)
    await staff.views.add_note(user, urn, pupil_id, body.strip(), staff.clock.now())
    await staff.views.record(user, "note_added", urn, pupil_id, staff.clock.now())
    return RedirectResponse(f"/schools/{urn}/pupils/{pupil_id}#notes", status_code=303)
