"""kill -9 of triage and of the notifier at seeded random points while a morning's marks
flow: after restarts, every expected text reaches the Twilio stub exactly once.

The services run as real processes (`python -m triage`, `python -m notifier`) on the real
RabbitMQ and PostgreSQL; their clocks read 09:40 on a school Monday (CLOCK_OFFSET_SECONDS) so the
first-day contacts are due as soon as they are decided."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from broker_messages import topology
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.factories import LONDON, contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.processes import ServiceProcess, base_environment, clock_offset_to
from tests.stack import SIGNING_KEY

SEED = int(os.environ.get("CRASH_SEED", "20261123"))
KILL_POINTS = int(os.environ.get("CRASH_KILL_POINTS", "24"))
PUPILS = 150
TOKEN = "crash-test-token"


def _phone(n: int) -> str:
    return f"+4477009{n:05d}"


def _absent(rng: random.Random) -> set[int]:
    return set(rng.sample(range(PUPILS), PUPILS // 5))


@pytest.fixture
async def processes(
    amqp_url: str, broker: Any, twilio: TwilioStub, smtp: SmtpSink, tmp_path: Path,
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess, str, str]]:
    from tests.conftest import _drop_postgres_database, _fresh_postgres_database

    triage_db, triage_url = await _fresh_postgres_database()
    notifier_db, notifier_url = await _fresh_postgres_database()
    env = base_environment() | {
        "AMQP_URL": amqp_url, "API_TOKEN": TOKEN, "CONTACT_SIGNING_KEY": SIGNING_KEY,
        "TRIAGE_DATABASE_URL": triage_url, "NOTIFIER_DATABASE_URL": notifier_url,
        "CLOCK_OFFSET_SECONDS": clock_offset_to(dt.datetime(2026, 11, 23, 9, 40, tzinfo=LONDON)),
        "TRIAGE_SCHEDULER_POLL_SECONDS": "0.2", "NOTIFIER_DISPATCH_POLL_SECONDS": "0.2",
        "TWILIO_ACCOUNT_SID": twilio.account_sid, "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM": "+447700900999", "TWILIO_API_BASE": twilio.base_url,
        "SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port),
        "NOTIFIER_PROVIDER_TIMEOUT": "1", "NOTIFIER_SEND_ATTEMPTS": "3",
        "NOTIFIER_RETRY_INITIAL_SECONDS": "0.05", "NOTIFIER_RETRY_MAX_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    triage = ServiceProcess("triage", env, tmp_path)
    notifier = ServiceProcess("notifier", env, tmp_path)
    triage.start()
    await triage.ready()  # migrations first, so the two never race to create the schema
    notifier.start()
    await notifier.ready()
    try:
        yield triage, notifier, triage_url, notifier_url
    finally:
        triage.stop()
        notifier.stop()
        await _drop_postgres_database(triage_db)
        await _drop_postgres_database(notifier_db)


async def _publish_morning(broker: Any, absent: set[int]) -> None:
    channel = await broker.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
    recorded = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    for n in range(PUPILS):
        event = mark(f"P{n:03d}", "N" if n in absent else "/", recorded=recorded)
        await exchange.publish(
            aio_pika.Message(__import__("json").dumps(event).encode(),
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="register.mark")
        if n % 10 == 9:
            await asyncio.sleep(0.01)  # a register arrives class by class, not all at once
    await channel.close()


async def _quiet(triage_url: str, notifier_url: str) -> bool:
    """No decision left to act on and no message left to send."""
    async def count(url: str, query: str) -> int:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(query))).scalar_one())
        finally:
            await engine.dispose()

    # Only this morning's: an N's re-code check waits five school days, by design.
    pending_actions = await count(
        triage_url, "SELECT count(*) FROM scheduled_actions WHERE status = 'pending' "
                    "AND due_at < '2026-11-24T00:00:00+00:00'")
    outbox = await count(triage_url, "SELECT count(*) FROM outbox")
    unsent = await count(
        notifier_url, "SELECT count(*) FROM notifications WHERE status IN ('pending','sending')")
    return pending_actions == 0 and outbox == 0 and unsent == 0


async def test_kill_nine_at_random_points_loses_and_doubles_no_text(
    processes: tuple[ServiceProcess, ServiceProcess, str, str], broker: Any,
    twilio: TwilioStub,
) -> None:
    triage, notifier, triage_url, notifier_url = processes
    rng = random.Random(SEED)
    absent = _absent(rng)
    roster = school([
        pupil(f"P{n:03d}", f"Child{n}", contacts=[contact(1, phone=_phone(n), email=None)])
        for n in range(PUPILS)
    ])
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = await client.put(f"{triage.url}/api/v1/schools/{roster['urn']}", json=roster)
        assert response.status_code == 200, response.text

    # A quarter of the kill points hit the notifier right after Twilio accepted a text and
    # before the answer reaches it: the window where a naive sender would text twice.
    accepted_kills = rng.sample(range(1, len(absent)), KILL_POINTS // 4)
    accepted = 0

    def kill_notifier_mid_answer(_: dict[str, Any]) -> None:
        nonlocal accepted
        accepted += 1
        if accepted in accepted_kills:
            notifier.kill()
            notifier.start()

    twilio.on_accepted = kill_notifier_mid_answer
    publishing = asyncio.create_task(_publish_morning(broker, absent))
    for point in range(KILL_POINTS - len(accepted_kills)):
        await asyncio.sleep(rng.uniform(0.05, 0.35))
        victim = (triage, notifier)[point % 2]
        victim.kill()
        victim.start()
    await publishing
    await triage.ready()
    await notifier.ready()

    expected = sorted(_phone(n) for n in absent)
    await twilio.wait_for_messages(len(expected), timeout=120)
    async with asyncio.timeout(60):
        while not await _quiet(triage_url, notifier_url):
            await asyncio.sleep(0.2)
    sent = Counter(message["to"] for message in twilio.messages)
    doubled = {to: n for to, n in sent.items() if n > 1}
    assert not doubled, f"texted twice: {doubled}"
    assert sorted(sent) == expected, "every absent pupil's parent texted, nobody else"
    assert triage.kills + notifier.kills == KILL_POINTS >= 20
    assert triage.kills >= 5 and notifier.kills >= 5
