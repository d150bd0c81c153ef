"""Notifier replicas share one rate limit: the provider counts per sender, whoever sends, so
two replicas on one database must together stay within the configured rate (the limit's state
lives in `rate_slots`, notifier.rate_limit.SharedRateLimit)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from notifier.app import NotifierService
from notifier.migrations import upgrade
from notifier.models import notifications
from notifier.rate_limit import SharedRateLimit
from servicekit.database import make_engine
from sqlalchemy import select

from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack, family_request, parent
from tests.test_notifier_sending import VirtualTimer, most_in_any_second

LIMIT = 20.0
TEXTS = 60


async def test_limits_sharing_a_database_grant_the_rate_between_them(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")
    await upgrade(engine)
    timer = VirtualTimer()
    try:
        limits = [SharedRateLimit(engine, "sms", 10, timer) for _ in range(3)]
        grants = await asyncio.gather(*(limits[n % 3].acquire() for n in range(150)))
    finally:
        await engine.dispose()
    # Three limits of 10/s, each one of them alone would allow 10 a second: together 10.
    assert len(set(grants)) == 150
    assert most_in_any_second(grants) <= 10


async def _settled(engine: Any, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            async with engine.connect() as conn:
                statuses = (await conn.execute(select(notifications.c.status))).scalars().all()
            if len(statuses) == count and set(statuses) == {"sent"}:
                return
            await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_replicas_on_one_database_never_exceed_the_senders_rate_together(
    amqp_url: str, broker: Any, postgres_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=postgres_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path,
                     notifier_overrides={"sms_per_second": LIMIT, "send_concurrency": 10,
                                         "dispatch_poll_seconds": 0.05}) as stack:
        others = [NotifierService(stack.notifier_settings, stack.clock) for _ in range(2)]
        for other in others:  # each claims 20 rows at a time: every replica has some to send
            await other.start()
        replicas = [stack.notifier, *others]
        try:
            requests = [
                family_request(stack.clock.now(),
                               parent(1, phone=f"+4477009{n:05d}", pupil_id=f"P{n}"),
                               pupils=((f"P{n}", "Sally"),), unreachable=())
                for n in range(TEXTS)
            ]
            assert await stack.notifier.intake.accept(requests) == [None] * TEXTS
            for replica in replicas:
                assert replica.dispatcher is not None
                replica.dispatcher.wake()
            await twilio.wait_for_messages(TEXTS, timeout=30)
            await _settled(stack.notifier.engine, TEXTS)
            senders = [r.dispatcher.settled for r in replicas if r.dispatcher is not None]
        finally:
            for other in others:
                await other.stop()
    assert sorted(m["to"] for m in twilio.messages) == sorted(r.family[0].phone
                                                              for r in requests)
    assert sum(1 for settled in senders if settled) >= 2, f"replicas shared the work: {senders}"
    # One of slack, as the benchmark allows: slots are spaced exactly, arrivals jitter.
    assert most_in_any_second(list(twilio.arrivals.values())) <= LIMIT + 1
