"""What a school sent on a day, who looked at which child, and a social worker's pupils."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from staff.access import SAFEGUARDING_LEADS, Role
from staff.contact_state import LONDON
from staff.pages.common import CurrentUser, render, school_staff_only, staff_app

router = APIRouter()


@router.get("/schools/{urn}/messages", response_class=HTMLResponse)
async def messages_page(request: Request, urn: str, user: CurrentUser,
                        date: dt.date | None = None) -> HTMLResponse:
    school_staff_only(user, urn)
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
