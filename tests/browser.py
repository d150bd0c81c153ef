"""Browser tests: Debian's chromium driven by Playwright, pages checked by axe-core.

Playwright cannot download its own browser here, so it drives the `chromium` on PATH
(`make test` installs it: scripts/ensure-services.sh). One browser serves the whole session
(the `chromium` fixture in conftest.py); each test gets its own context, so no cookies or
storage leak between tests. Apps under test run behind a real uvicorn on a loopback port
(`served`), because the staff app talks to triage and the notifier over HTTP as it does in
production."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                         "has_touch": True}
# WCAG 2.2 AA and axe's best practices; only serious and critical findings fail a test.
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                     "wcag22aa", "best-practice"]},
               "resultTypes": ["violations"]}
BLOCKING_IMPACTS = ("serious", "critical")


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """A headless chromium from PATH; fails with the fix when it is missing rather than let
    Playwright suggest downloading a browser of its own."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium is not on PATH: run `make services` (as root it installs "
                           "Debian's chromium) or apt-get install chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def _context(browser: Browser, options: dict[str, Any]) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(**options)
    try:
        yield context
    finally:
        await context.close()


def desktop_context(browser: Browser) -> contextlib.AbstractAsyncContextManager[BrowserContext]:
    """A fresh context (own cookies and storage) with a 1280x900 desktop viewport."""
    return _context(browser, DESKTOP)


def phone_context(browser: Browser) -> contextlib.AbstractAsyncContextManager[BrowserContext]:
    """A fresh context as a phone: 390x844, mobile meta viewport honoured, touch events."""
    return _context(browser, PHONE)


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in this event loop; yields its
    base URL (no trailing slash). The app's lifespan runs around it (the triage and notifier
    apps have none: the Stack starts their services). No access log: request lines would
    carry whatever a page puts in its query strings; uvicorn's own log stays under the
    personal-data check."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None,
                            access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # a failed lifespan startup ends serve(): fail here, not hang
            await task
            raise RuntimeError("uvicorn stopped before it started listening (see its log)")
        await asyncio.sleep(0.01)  # uvicorn offers no event for "listening"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _violation_text(violation: dict[str, Any]) -> str:
    targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"])
    return f"  {violation['id']} ({violation['impact']}): {violation['help']} at {targets}"


async def assert_accessible(page: Page, context: str) -> None:
    """Run axe-core on the page as it stands and fail on every serious or critical WCAG 2.2
    AA or best-practice violation, naming `context` (which page, which state)."""
    results = await Axe().run(page, options=AXE_OPTIONS)
    blocking = [violation for violation in results.response["violations"]
                if violation["impact"] in BLOCKING_IMPACTS]
    if blocking:
        raise AssertionError(f"{context}: {len(blocking)} serious or critical accessibility "
                             "violations:\n" + "\n".join(map(_violation_text, blocking)))


async def screenshot(page: Page, name: str) -> Path | None:
    """Save the full page as `$SCREENSHOT_DIR/<name>.png` when SCREENSHOT_DIR is set (to
    refresh docs/screenshots/); otherwise nothing, so ordinary runs write no files."""
    directory = os.environ.get("SCREENSHOT_DIR")
    if not directory:
        return None
    path = Path(directory) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=True)
    return path
