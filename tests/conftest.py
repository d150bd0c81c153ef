"""Shared fixtures: the real RabbitMQ and PostgreSQL on this machine, the loopback Twilio stub,
the SMTP sink, both services running in this process on an injected clock, and chromium for
the browser tests (tests/browser.py)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from broker_messages import topology
from playwright.async_api import Browser, Page
from servicekit.logs import quiet_third_party

from tests.browser import desktop_context, launch_chromium
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack

AMQP_BASE = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A virtual host of our own for the test session, so the contract's fixed queue names
    never meet another run's messages; falls back to the default vhost without rabbitmqctl."""
    vhost = f"absence-test-{uuid.uuid4().hex[:8]}"
    ctl = shutil.which("rabbitmqctl")
    created = False
    if ctl:
        try:
            created = subprocess.run([ctl, "add_vhost", vhost], capture_output=True, check=False,
                                     timeout=60).returncode == 0
            if created:
                subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                               capture_output=True, check=True, timeout=60)
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError):
            created = False
    yield AMQP_BASE.rstrip("/") + "/" + vhost if created else AMQP_BASE
    if created:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, check=False,  # type: ignore[list-item]
                       timeout=60)


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """A connection for the test itself, with every queue of ours emptied first."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await topology.declare_events(channel)
    await topology.declare_requests(channel)
    for name in (topology.TRIAGE_QUEUE, topology.EVENTS_DEAD_QUEUE, topology.NOTIFIER_QUEUE,
                 topology.REQUESTS_DEAD_QUEUE):
        queue = await channel.get_queue(name)
        await queue.purge()
    await channel.close()
    yield connection
    await connection.close()


async def _fresh_postgres_database() -> tuple[str, str]:
    name = f"absence_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


async def _drop_postgres_database(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """Every storage test runs on the embedded default and on the production store."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/state.db"
        return
    name, url = await _fresh_postgres_database()
    yield url
    await _drop_postgres_database(name)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    name, url = await _fresh_postgres_database()
    yield url
    await _drop_postgres_database(name)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStub]:
    async with TwilioStub() as stub:
        yield stub


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def stack(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Any,
) -> AsyncIterator[Stack]:
    """Triage and the notifier on the real broker and database, sharing a frozen clock."""
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """One headless chromium for the session; launching one per test would dominate the run."""
    async with launch_chromium() as browser:
        yield browser


@pytest.fixture
async def page(chromium: Browser) -> AsyncIterator[Page]:
    """A page in a fresh desktop context, closed after the test (tests/browser.py)."""
    async with desktop_context(chromium) as context:
        yield await context.new_page()


# Privacy: logs carry ids, never phone numbers, email addresses or names (docs/rules.md "Contacting people").
_PHONE = re.compile(r"\+\d{10,15}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_FIXTURE_NAMES = re.compile(
    r"\b(Sally|Smith|Jane|Tom|Ada|Jones|Rhian|Brown|Noor|Khan|Doe|Child\d+)\b")
# Test-side loggers (the SMTP sink, the stub's web server, the tests' own HTTP client and
# browser driver).
_TEST_SIDE = ("tests", "mail.log", "aiosmtpd", "aiohttp.access", "aiohttp.server", "httpx",
              "httpcore", "asyncio", "hypothesis", "playwright")


def _record_text(record: logging.LogRecord) -> str:
    parts = []
    for render in (record.getMessage, lambda: str(record.msg),
                   lambda: logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
                   if record.exc_info else ""):
        try:
            parts.append(render())
        except Exception:  # noqa: BLE001, S112 - a library object whose repr fails
            continue
    return " ".join(parts)


@pytest.fixture(autouse=True)
def logs_carry_no_personal_data(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log record the services write during every test is checked for personal data."""
    quiet_third_party()  # as the services configure it in production
    caplog.set_level(logging.INFO)
    for name in ("triage", "notifier", "servicekit"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    leaks = []
    for when in ("setup", "call", "teardown"):
        for record in caplog.get_records(when):  # type: ignore[arg-type]
            if record.name.startswith(_TEST_SIDE):
                continue
            text = _record_text(record)
            for pattern in (_PHONE, _EMAIL, _FIXTURE_NAMES):
                if match := pattern.search(text):
                    leaks.append(f"{record.name}: {match.group(0)!r} in {text[:200]!r}")
    assert not leaks, "personal data in the logs:\n" + "\n".join(leaks[:10])
