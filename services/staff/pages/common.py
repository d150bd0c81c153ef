"""What every page shares: the signed-in person and the CSRF check, rendering, who may see
which school and pupil, and the words pages use for codes, results and lists. Every page needs
a signed-in person; every form carries the session's CSRF token; every pupil a person may not
see is answered 404, the same as one that does not exist."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from staff.access import ROLE_NAMES, SAFEGUARDING_LEADS, SCHOOL_STAFF, Role, User
from staff.backend import NotFound, ServiceError
from staff.contact_state import LONDON
from staff.context import StaffApp
from staff.sessions import COOKIE, Session

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
    path.read_bytes() for path in sorted((Path(__file__).parent.parent / "static").glob("*.*")))
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


def rule_name(rule: str) -> str:
    """`first_day_contact` -> "First day contact" (the rule ids of docs/rules.md)."""
    return rule.replace("_", " ").capitalize()


templates.filters["local"] = _local
templates.filters["rule_name"] = rule_name
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



def school_staff_only(user: User, urn: str) -> None:
    if not user.may(SCHOOL_STAFF) or not user.serves(urn):
        raise HTTPException(404, "Not found")


async def may_see_pupil(request: Request, user: User, urn: str, pupil_id: str) -> None:
    """School staff and LA teams: their schools' pupils; a social worker: their allocated
    pupils only. Anyone else: the pupil does not exist."""
    if user.role is Role.SOCIAL_WORKER:
        allocated = await staff_app(request).backend.allocated(user.email)
        if not any(p["school_urn"] == urn and p["pupil_id"] == pupil_id for p in allocated):
            raise HTTPException(404, "Not found")
    elif not user.serves(urn):
        raise HTTPException(404, "Not found")


async def pupil_or_404(request: Request, urn: str, pupil_id: str) -> dict[str, Any]:
    try:
        return await staff_app(request).backend.pupil(urn, pupil_id)
    except NotFound:
        raise HTTPException(404, "Not found") from None
