"""The pages people use (docs/staff.md). Every page needs a signed-in person; every form
carries the session's CSRF token; every pupil a person may not see is answered 404, the same
as one that does not exist."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from staff.access import (
    LIST_READERS,
    ROLE_NAMES,
    SAFEGUARDING_LEADS,
    SCHOOL_STAFF,
    Role,
    User,
)
from staff.backend import NotFound, Rejected, ServiceError
from staff.contact_state import LONDON, by_pupil, contact_of
from staff.context import StaffApp
from staff.sessions import COOKIE, Session
from staff.views import MAX_NOTE

router = APIRouter()
templates = Environment(loader=PackageLoader("staff", "templates"),
                        autoescape=select_autoescape(default=True), enable_async=False)

Urn = Annotated[str, Query(pattern=r"^[0-9]{6,8}$")]
# What "record what happened" offers, as the 2024 register codes (docs/rules.md "Codes").
EXPLANATIONS = {
    "I": "Illness",
    "M": "Medical or dental appointment",
    "R": "Religious observance",
    "C": "Other authorised circumstances",
    "O": "Unauthorised: no good reason",
    "G": "Holiday not authorised",
}
TASK_RESULTS = {
    "seen": "Seen the child: safe and well",
    "no_answer": "No answer at the door",
    "concern": "Concern: escalate to the safeguarding lead",
}
# What each kind of task is called on screen (triage's task kinds, docs/rules.md).
TASK_KINDS = {
    "home_visit": "Home visit",
    "family_unreachable": "Family unreachable",
    "unexplained_not_recoded": "Unexplained mark not corrected",
    "dsl_escalation": "Concern for the safeguarding lead",
}
LISTS = {
    "below_90": "Attendance below 90%",
    "persistent": "Persistent absence (10% or more)",
    "severe": "Severe absence (50% or more)",
    "penalty_notice": "Penalty notice candidates",
    "unexplained_over_5_days": "Unexplained marks older than 5 school days",
}
# Asset URLs change when the files do, so a browser never keeps a stale style sheet.
STATIC_VERSION = hashlib.sha256(b"".join(
    path.read_bytes() for path in sorted((Path(__file__).parent / "static").glob("*.*")))
).hexdigest()[:12]


def staff_app(request: Request) -> StaffApp:
    app: StaffApp = request.app.state.staff
    return app


class SignIn(Exception):
    """No valid session: pages redirect to sign-in, htmx requests are told to."""


async def _signed_in(request: Request) -> tuple[User, Session]:
    staff = staff_app(request)
    token = request.cookies.get(COOKIE)
    session = await staff.sessions.find(token, staff.clock.now()) if token else None
    user = await staff.accounts.get(session.user_id) if session else None
    if session is None or user is None:
        raise SignIn()
    request.state.csrf_token = session.csrf_token
    return user, session


async def signed_in(request: Request) -> User:
    user, _ = await _signed_in(request)
    return user


async def checked_form(request: Request) -> User:
    """A change: the session's CSRF token must come with it (form field or htmx header)."""
    user, session = await _signed_in(request)
    form = await request.form()
    sent = request.headers.get("x-csrf-token") or str(form.get("csrf_token", ""))
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise HTTPException(403, "This form has expired. Go back, reload the page and try again.")
    return user


CurrentUser = Annotated[User, Depends(signed_in)]
FormUser = Annotated[User, Depends(checked_form)]


def render(request: Request, name: str, user: User | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    staff = staff_app(request)
    html = templates.get_template(name).render(
        user=user, role_names=ROLE_NAMES, Role=Role,
        csrf_token=getattr(request.state, "csrf_token", ""), static=STATIC_VERSION,
        refresh_seconds=int(staff.settings.refresh_seconds), path=request.url.path,
        leads=SAFEGUARDING_LEADS, school_staff=SCHOOL_STAFF, **context)
    return HTMLResponse(html, status_code=status)


def _local(value: Any, fmt: str = "%d %b %H:%M") -> str:
    if not value:
        return ""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when.astimezone(LONDON).strftime(fmt)


def _long_date(value: Any) -> str:
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    return f"{day:%A} {day.day} {day:%B %Y}"


def _rule_name(rule: str) -> str:
    """`first_day_contact` -> "First day contact" (the rule ids of docs/rules.md)."""
    return rule.replace("_", " ").capitalize()


templates.filters["local"] = _local
templates.filters["rule_name"] = _rule_name
templates.filters["long_date"] = _long_date


def install_error_pages(app: FastAPI) -> None:
    """Sign-in redirects and readable error pages (registered by staff.app)."""

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, _: SignIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"/login?next={quote(target, safe='')}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        titles = {404: "Page not found", 403: "Not allowed", 422: "Check what you entered"}
        message = ("There is nothing here, or it is not yours to see."
                   if error.status_code == 404 else str(error.detail))
        return render(request, "error.html", None, status=error.status_code,
                      title=titles.get(error.status_code, "Something went wrong"),
                      message=message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                    for e in error.errors()]
        return render(request, "error.html", None, status=422, title="Check what you entered",
                      message="; ".join(problems))

    @app.exception_handler(ServiceError)
    async def _down(request: Request, error: ServiceError) -> Response:
        return render(request, "error.html", None, status=503, title="Service unavailable",
                      message="The attendance service is not answering. Try again in a "
                              "minute; nothing you entered has been lost or half-saved.")


# Sign-in and out

@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=_safe_next(next), problem=None)


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, email: Annotated[str, Form(max_length=254)] = "",
                password: Annotated[str, Form(max_length=1000)] = "",
                next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    staff = staff_app(request)
    now = staff.clock.now()
    user = await staff.accounts.sign_in(email, password, now)
    if user is None:
        return render(request, "login.html", None, status=401, next=_safe_next(next),
                      email=email, problem="The email address or password is not right, or "
                      "the account is waiting after too many attempts. Try again in a few "
                      "minutes or ask your administrator.")
    token = await staff.sessions.open(user.id, now)
    target = _safe_next(next)
    response = RedirectResponse(user.home if target == "/" else target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax",
                        secure=staff.settings.secure_cookies, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, user: FormUser) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await staff_app(request).sessions.close(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/")
async def home(user: CurrentUser) -> Response:
    return RedirectResponse(user.home, status_code=303)


@router.get("/schools", response_class=HTMLResponse)
async def schools_page(request: Request, user: CurrentUser,
                       urn: Annotated[str | None, Query(pattern=r"^[0-9]{6,8}$")] = None
                       ) -> Response:
    if urn:
        return RedirectResponse(f"/schools/{urn}/today", status_code=303)
    return render(request, "schools.html", user,
                  schools=sorted(user.schools) if user.schools is not None else None)


# Access

def _school_staff(user: User, urn: str) -> None:
    if not user.may(SCHOOL_STAFF) or not user.serves(urn):
        raise HTTPException(404, "Not found")


async def _may_see_pupil(request: Request, user: User, urn: str, pupil_id: str) -> None:
    """School staff and LA teams: their schools' pupils; a social worker: their allocated
    pupils only. Anyone else: the pupil does not exist."""
    if user.role is Role.SOCIAL_WORKER:
        allocated = await staff_app(request).backend.allocated(user.email)
        if not any(p["school_urn"] == urn and p["pupil_id"] == pupil_id for p in allocated):
            raise HTTPException(404, "Not found")
    elif not user.serves(urn):
        raise HTTPException(404, "Not found")


# Today

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
    _school_staff(user, urn)
    context = await _today(request, urn, date)
    reported = await staff_app(request).backend.explanations(urn)
    return render(request, "today.html", user, urn=urn, done=done, reported=reported,
                  explanations=EXPLANATIONS, **context)


@router.get("/schools/{urn}/today/rows", response_class=HTMLResponse)
async def today_rows(request: Request, urn: str, user: CurrentUser,
                     date: dt.date | None = None) -> HTMLResponse:
    """The live part of Today, polled by htmx."""
    _school_staff(user, urn)
    context = await _today(request, urn, date)
    return render(request, "_today_rows.html", user, urn=urn, **context)


# Recording what happened

@router.get("/schools/{urn}/pupils/{pupil_id}/record", response_class=HTMLResponse)
async def record_page(request: Request, urn: str, pupil_id: str, user: CurrentUser,
                      date: dt.date, session: str = "AM") -> HTMLResponse:
    _school_staff(user, urn)
    pupil = await _pupil_or_404(request, urn, pupil_id)
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
    _school_staff(user, urn)
    staff = staff_app(request)
    pupil = await _pupil_or_404(request, urn, pupil_id)
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
    _school_staff(user, urn)
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
    _school_staff(user, urn)
    if code not in EXPLANATIONS:
        raise HTTPException(422, "Choose what the absence was.")
    settled = await _settle_explanation(request, urn, explanation_id, user, code)
    await _audit_explanation(request, user, urn, settled, f"accepted as {code}")
    return RedirectResponse(f"/schools/{urn}/today?done=accepted", status_code=303)


@router.post("/schools/{urn}/explanations/{explanation_id}/dismiss", response_class=HTMLResponse)
async def dismiss_explanation(request: Request, urn: str, explanation_id: int,
                              user: FormUser) -> Response:
    """Not about this absence: the family is treated as not yet heard from."""
    _school_staff(user, urn)
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
    await _may_see_pupil(request, user, urn, pupil_id)
    if user.role is Role.SOCIAL_WORKER or not body.strip():
        raise HTTPException(422, "Write the note first.")
    staff = staff_app(request)
    await _pupil_or_404(request, urn, pupil_id)
    await staff.views.add_note(user, urn, pupil_id, body.strip(), staff.clock.now())
    await staff.views.record(user, "note_added", urn, pupil_id, staff.clock.now())
    return RedirectResponse(f"/schools/{urn}/pupils/{pupil_id}#notes", status_code=303)


# A pupil's page

async def _pupil_or_404(request: Request, urn: str, pupil_id: str) -> dict[str, Any]:
    try:
        return await staff_app(request).backend.pupil(urn, pupil_id)
    except NotFound:
        raise HTTPException(404, "Not found") from None


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
    await _may_see_pupil(request, user, urn, pupil_id)
    staff = staff_app(request)
    pupil = await _pupil_or_404(request, urn, pupil_id)
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
                       "text": f"{_rule_name(str(decision.get('rule')))}: "
                               f"{decision.get('outcome')} — "
                               f"{decision.get('reason')}"})
    for task in timeline.get("tasks", []):
        events.append({"at": task.get("created_at"), "kind": "Task",
                       "text": f"{_rule_name(str(task.get('kind')))} ({task.get('status')})"
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


# Tasks

@router.get("/schools/{urn}/tasks", response_class=HTMLResponse)
async def tasks_page(request: Request, urn: str, user: CurrentUser,
                     done: str | None = None) -> HTMLResponse:
    _school_staff(user, urn)
    tasks = await staff_app(request).backend.tasks(urn, "open")
    if not user.may(SAFEGUARDING_LEADS):
        tasks = [t for t in tasks if t["kind"] != "dsl_escalation"]
    return render(request, "tasks.html", user, urn=urn, tasks=tasks, results=TASK_RESULTS,
                  kinds=TASK_KINDS, done=done)


@router.post("/schools/{urn}/tasks/{task_id}/complete", response_class=HTMLResponse)
async def complete_task(request: Request, urn: str, task_id: int, user: FormUser,
                        pupil_id: Annotated[str, Form(max_length=64)],
                        result: Annotated[str, Form()] = "",
                        outcome: Annotated[str, Form(max_length=2000)] = "") -> Response:
    _school_staff(user, urn)
    # A visit or a call: one of TASK_RESULTS. A lead's review of a concern: what they decided.
    if result not in TASK_RESULTS and not (result == "" and outcome.strip()):
        raise HTTPException(422, "Choose what happened, or write what you decided.")
    staff = staff_app(request)
    # Triage keeps the result beside the text ("concern: …") and who recorded it.
    text = " ".join(filter(None, (outcome.strip(), f"(recorded by {user.ref})")))
    try:
        await staff.backend.complete_task(task_id, result or None, text)
    except NotFound:
        raise HTTPException(404, "Not found") from None
    await staff.views.record(user, "task_completed", urn, pupil_id, staff.clock.now(),
                             f"task {task_id}: {result or 'reviewed'}")
    return RedirectResponse(f"/schools/{urn}/tasks?done=saved", status_code=303)


@router.post("/schools/{urn}/tasks/{task_id}/assign", response_class=HTMLResponse)
async def assign_task(request: Request, urn: str, task_id: int, user: FormUser,
                      pupil_id: Annotated[str, Form(max_length=64)],
                      assignee: Annotated[str, Form(max_length=200)] = "") -> Response:
    _school_staff(user, urn)
    if not assignee.strip():
        raise HTTPException(422, "Say who the task is for.")
    staff = staff_app(request)
    try:
        await staff.backend.assign_task(task_id, assignee.strip())
    except NotFound:
        raise HTTPException(404, "Not found") from None
    await staff.views.record(user, "task_assigned", urn, pupil_id, staff.clock.now(),
                             f"task {task_id}")
    return RedirectResponse(f"/schools/{urn}/tasks?done=assigned", status_code=303)


# Lists

async def _list_rows(request: Request, user: User, which: str, year_group: int | None,
                     school: str | None) -> dict[str, Any]:
    if not user.may(LIST_READERS):
        raise HTTPException(404, "Not found")
    if which not in LISTS:
        which = "below_90"
    schools: Sequence[str] | None
    if school:
        if not user.serves(school):
            raise HTTPException(404, "Not found")
        schools = [school]
    else:
        schools = None if user.schools is None else sorted(user.schools)
    result = await staff_app(request).backend.attendance(schools, which, year_group)
    return {"rows": result["rows"], "truncated": result.get("truncated", False),
            "which": which, "year_group": year_group, "school": school}


YearGroup = Annotated[int | None, Query(ge=-2, le=14)]
SchoolFilter = Annotated[str | None, Query(pattern=r"^[0-9]{6,8}$")]


# Rows per page on screen; the CSV carries the whole list.
PAGE_SIZE = 100


@router.get("/lists", response_class=HTMLResponse)
async def lists_page(request: Request, user: CurrentUser, list: str = "below_90",
                     year_group: YearGroup = None, school: SchoolFilter = None,
                     page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> HTMLResponse:
    context = await _list_rows(request, user, list, year_group, school)
    total = len(context["rows"])
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    first = (page - 1) * PAGE_SIZE
    context["rows"] = context["rows"][first:first + PAGE_SIZE]
    return render(request, "lists.html", user, lists=LISTS, total=total, page=page,
                  pages=pages, first=first, **context)


CSV_COLUMNS = ("school_urn", "pupil_id", "family_name", "given_name", "year_group",
               "attendance_percent", "absence_percent", "possible", "authorised",
               "unauthorised", "unexplained_over_5_days")


@router.get("/lists.csv")
async def lists_csv(request: Request, user: CurrentUser, list: str = "below_90",
                    year_group: YearGroup = None, school: SchoolFilter = None) -> Response:
    context = await _list_rows(request, user, list, year_group, school)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in context["rows"]:
        # A name starting with = + - @ is written as text, never as a spreadsheet formula.
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    staff = staff_app(request)
    # An export is a view of every child on it: each school's lead sees who took one.
    by_school: dict[str, int] = {}
    for row in context["rows"]:
        by_school[row["school_urn"]] = by_school.get(row["school_urn"], 0) + 1
    for urn, count in sorted(by_school.items()):
        await staff.views.record(user, "exported", urn, "", staff.clock.now(),
                                 f"{LISTS[context['which']]}: {count} pupils")
    name = f"{context['which']}-{staff.clock.now():%Y-%m-%d}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


# Messages and the audit log

@router.get("/schools/{urn}/messages", response_class=HTMLResponse)
async def messages_page(request: Request, urn: str, user: CurrentUser,
                        date: dt.date | None = None) -> HTMLResponse:
    _school_staff(user, urn)
    staff = staff_app(request)
    day = date or staff.clock.now().astimezone(LONDON).date()
    since = dt.datetime.combine(day, dt.time(0), LONDON).astimezone(dt.UTC)
    until = since + dt.timedelta(days=1)
    messages = [m for m in await staff.backend.notifications(urn, since=since)
                if dt.datetime.fromisoformat(m["created_at"]) < until]
    failures = [m for m in messages if m["status"] in ("failed", "undelivered", "suppressed")]
    return render(request, "messages.html", user, urn=urn, messages=messages,
                  failures=failures, date=day)


@router.get("/schools/{urn}/audit", response_class=HTMLResponse)
async def audit_page(request: Request, urn: str, user: CurrentUser) -> HTMLResponse:
    if not user.may(SAFEGUARDING_LEADS) or not user.serves(urn):
        raise HTTPException(404, "Not found")
    entries = await staff_app(request).views.audit(urn)
    return render(request, "audit.html", user, urn=urn, entries=entries)


@router.get("/my-pupils", response_class=HTMLResponse)
async def my_pupils(request: Request, user: CurrentUser) -> HTMLResponse:
    if user.role is not Role.SOCIAL_WORKER:
        raise HTTPException(404, "Not found")
    pupils = await staff_app(request).backend.allocated(user.email)
    return render(request, "my_pupils.html", user, pupils=pupils)

