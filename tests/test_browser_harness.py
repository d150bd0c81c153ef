"""The browser-test harness itself (tests/browser.py): a page served by a real uvicorn loads in
chromium, axe-core passes an accessible page and fails one with a serious violation, the
phone context is phone-sized, screenshots are written only when asked for, and the stack's
services answer over real HTTP as the staff app will call them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import Browser, Page, expect

from tests.browser import assert_accessible, phone_context, screenshot, served
from tests.stack import API_TOKEN, Stack

_HEAD = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
         '<meta name="viewport" content="width=device-width, initial-scale=1">'
         "<title>{title}</title></head>")
GOOD = _HEAD.format(title="Absence follow-up") + (
    "<body><main><h1>Absence follow-up</h1>"
    '<form><label for="pupil">Pupil id</label><input id="pupil" name="pupil">'
    "<button>Find</button></form></main></body></html>")
# An input with no label: axe's `label` rule, impact critical.
UNLABELLED = _HEAD.format(title="Search") + (
    '<body><main><h1>Search</h1><form><input id="pupil" name="pupil">'
    "<button>Find</button></form></main></body></html>")


def _pages() -> FastAPI:
    app = FastAPI()
    app.get("/", response_class=HTMLResponse)(lambda: GOOD)
    app.get("/unlabelled", response_class=HTMLResponse)(lambda: UNLABELLED)
    return app


async def test_served_runs_the_lifespan_and_stops_listening_after() -> None:
    phases: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        phases.append("started")
        yield
        phases.append("stopped")

    app = FastAPI(lifespan=lifespan)
    app.get("/")(lambda: phases)
    async with served(app) as base_url, httpx.AsyncClient() as client:
        assert (await client.get(base_url + "/")).json() == ["started"]
    assert phases == ["started", "stopped"]
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(base_url + "/")


async def test_a_served_page_loads_in_chromium_at_desktop_size(page: Page) -> None:
    async with served(_pages()) as base_url:
        response = await page.goto(base_url + "/")
        assert response is not None and response.ok
        await expect(page.get_by_role("heading", name="Absence follow-up")).to_be_visible()
        assert page.viewport_size == {"width": 1280, "height": 900}


async def test_an_accessible_page_passes_and_a_serious_violation_fails(page: Page) -> None:
    async with served(_pages()) as base_url:
        await page.goto(base_url + "/")
        await assert_accessible(page, "good page")
        await page.goto(base_url + "/unlabelled")
        with pytest.raises(AssertionError) as failure:
            await assert_accessible(page, "unlabelled search")
    message = str(failure.value)
    assert message.startswith("unlabelled search: ")
    assert "label (critical): Form elements must have labels at #pupil" in message


async def test_a_phone_context_has_the_phone_viewport_and_touch(chromium: Browser) -> None:
    async with served(_pages()) as base_url, phone_context(chromium) as context:
        phone = await context.new_page()
        await phone.goto(base_url + "/")
        size = await phone.evaluate("[window.innerWidth, window.innerHeight]")
        touch = await phone.evaluate("navigator.maxTouchPoints > 0")
    assert size == [390, 844] and touch


async def test_screenshots_are_saved_only_when_a_directory_is_given(
        page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with served(_pages()) as base_url:
        await page.goto(base_url + "/")
        monkeypatch.delenv("SCREENSHOT_DIR", raising=False)
        assert await screenshot(page, "home") is None
        monkeypatch.setenv("SCREENSHOT_DIR", str(tmp_path / "shots"))
        saved = await screenshot(page, "home")
    assert saved == tmp_path / "shots" / "home.png"
    assert saved.read_bytes().startswith(b"\x89PNG")


async def test_the_stack_answers_over_real_http(stack: Stack) -> None:
    async with stack.served() as (triage_url, notifier_url), httpx.AsyncClient(
            headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        for base_url in (triage_url, notifier_url):
            assert base_url.startswith("http://127.0.0.1:")
            assert (await client.get(base_url + "/healthz")).status_code == 200
        notifications = await client.get(notifier_url + "/api/v1/notifications")
        assert notifications.status_code == 200 and notifications.json() == []
