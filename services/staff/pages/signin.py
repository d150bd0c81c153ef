"""Signing in and out, and where a person starts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from staff.pages.common import CurrentUser, FormUser, render, staff_app
from staff.sessions import COOKIE

router = APIRouter()


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
