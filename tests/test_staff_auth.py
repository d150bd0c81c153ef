"""Signing in to the staff web app (docs/staff.md "Signing in"): Argon2 hashes, session
cookies, CSRF on every form, a doubling wait after repeated failures, no open redirect, and
the command that makes the first administrator."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from servicekit.clock import FrozenClock
from sqlalchemy import select
from staff.access import Role
from staff.app import build, create_app, migrate
from staff.context import StaffApp
from staff.models import sessions, users
from staff.settings import StaffSettings

from tests.stack import MONDAY_MORNING

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[1]


class App:
    def __init__(self, client: httpx.AsyncClient, clock: FrozenClock, staff: StaffApp) -> None:
        self.client = client
        self.clock = clock
        self.staff = staff

    async def sign_in(self, email: str = "officer@millbrook.example",
                      password: str = PASSWORD, next: str = "/") -> httpx.Response:
        return await self.client.post("/login", data={"email": email, "password": password,
                                                      "next": next})


async def _app(database_url: str, **overrides: object) -> AsyncIterator[App]:
    settings = StaffSettings(database_url=database_url, api_token="t" * 30,  # type: ignore[arg-type]
                             **overrides)
    clock = FrozenClock(MONDAY_MORNING)
    staff = build(settings, clock=clock)
    await migrate(staff.engine)
    await staff.accounts.create(email="Officer@Millbrook.example", name="R Baish",
                                role=Role.ATTENDANCE_OFFICER, password=PASSWORD,
                                schools=["123456"], now=clock.now())
    transport = httpx.ASGITransport(app=create_app(staff))
    async with httpx.AsyncClient(transport=transport, base_url="http://staff.test") as client:
        yield App(client, clock, staff)
    await staff.backend.close()
    await staff.engine.dispose()


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[App]:
    async for running in _app(database_url):
        yield running


async def test_a_password_is_kept_as_an_argon2id_hash(app: App) -> None:
    async with app.staff.engine.connect() as conn:
        row = (await conn.execute(select(users))).one()
    assert row.email == "officer@millbrook.example"
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash


async def test_signing_in_sets_an_httponly_samesite_cookie_and_opens_the_school(app: App) -> None:
    response = await app.sign_in(email="OFFICER@millbrook.example")
    assert response.status_code == 303
    assert response.headers["location"] == "/schools/123456/today"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http on loopback: a Secure cookie would never return
    async with app.staff.engine.connect() as conn:
        stored = (await conn.execute(select(sessions.c.token_hash))).scalar_one()
    assert stored not in response.headers["set-cookie"]  # only the hash is kept


async def test_behind_tls_the_cookie_is_secure(tmp_path: Path) -> None:
    async for running in _app(f"sqlite+aiosqlite:///{tmp_path}/s.db",
                              public_url="https://staff.example"):
        response = await running.sign_in()
        assert "secure" in response.headers["set-cookie"].lower()


async def test_a_page_without_a_session_asks_for_sign_in_and_returns_there(app: App) -> None:
    response = await app.client.get("/schools/123456/tasks")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fschools%2F123456%2Ftasks"
    htmx = await app.client.get("/schools/123456/today/rows", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login?next=")
    signed = await app.sign_in(next="/schools/123456/tasks")
    assert signed.headers["location"] == "/schools/123456/tasks"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "javascript:x"])
async def test_sign_in_never_sends_a_person_to_another_site(app: App, target: str) -> None:
    response = await app.sign_in(next=target)
    assert response.headers["location"] == "/schools/123456/today"


async def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(app: App) -> None:
    wrong = await app.sign_in(password="not the password at all")
    unknown = await app.sign_in(email="nobody@millbrook.example")
    assert wrong.status_code == unknown.status_code == 401
    assert "The email address or password is not right" in wrong.text
    assert wrong.text.replace("nobody@", "officer@") == unknown.text.replace("nobody@", "officer@")
    assert "set-cookie" not in wrong.headers


async def test_repeated_failures_make_the_account_wait_and_the_wait_doubles(app: App) -> None:
    for _ in range(5):
        assert (await app.sign_in(password="guess " * 3)).status_code == 401
    assert (await app.sign_in()).status_code == 401  # even the right password waits
    app.clock.advance(dt.timedelta(minutes=5, seconds=1))
    assert (await app.sign_in(password="guess " * 3)).status_code == 401  # sixth failure
    app.clock.advance(dt.timedelta(minutes=5, seconds=1))
    assert (await app.sign_in()).status_code == 401  # now 10 minutes
    app.clock.advance(dt.timedelta(minutes=5))
    assert (await app.sign_in()).status_code == 303
    # Success clears the count: one more failure does not lock the account.
    assert (await app.sign_in(password="guess " * 3)).status_code == 401
    assert (await app.sign_in()).status_code == 303


async def test_every_form_needs_the_sessions_csrf_token(app: App) -> None:
    await app.sign_in()
    refused = await app.client.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    missing = await app.client.post("/schools/123456/pupils/P1/notes", data={"body": "x"})
    assert missing.status_code == 403
    page = await app.client.get("/login")
    assert page.status_code == 200
    token = await _csrf(app)
    out = await app.client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303
    again = await app.client.get("/schools/123456/tasks")
    assert again.status_code == 303 and again.headers["location"].startswith("/login")


async def _csrf(app: App) -> str:
    async with app.staff.engine.connect() as conn:
        return str((await conn.execute(select(sessions.c.csrf_token))).scalar_one())


async def test_sessions_end_after_an_idle_hour(app: App) -> None:
    await app.sign_in()
    app.clock.advance(dt.timedelta(minutes=61))
    response = await app.client.get("/schools/123456/tasks")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_pages_carry_a_strict_content_security_policy(app: App) -> None:
    response = await app.client.get("/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["cache-control"] == "no-store"
    assert '<label for="email">' in response.text


async def test_another_schools_pages_are_not_found(app: App) -> None:
    await app.sign_in()
    for path in ("/schools/654321/today", "/schools/654321/tasks", "/schools/654321/messages",
                 "/schools/654321/audit", "/lists?school=654321", "/my-pupils"):
        response = await app.client.get(path)
        assert response.status_code == 404, path
        assert "not yours to see" in response.text


def test_the_first_administrator_is_made_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "STAFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/staff.db",
           "API_TOKEN": "t" * 30}
    command = [sys.executable, "-m", "staff", "users", "add", "--email", "head@example.org",
               "--name", "Head", "--role", "admin", "--password-stdin"]
    made = subprocess.run(command, input=PASSWORD + "\n", env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert "made account 1 (admin)" in made.stdout
    short = subprocess.run(command, input="short\n", env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=False)
    assert short.returncode == 2
    assert "at least 12 characters" in short.stderr
    again = subprocess.run(command, input=PASSWORD + "\n", env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2 and "exists already" in again.stderr
