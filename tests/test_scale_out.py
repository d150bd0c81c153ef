"""Two triage replicas and two notifier replicas on the same queues and PostgreSQL send
exactly what one of each would: per-pupil ordering and deduplication hold across replicas."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from notifier.app import NotifierService
from notifier.models import notifications
from sqlalchemy import select
from triage.app import TriageService

from tests.factories import LONDON, contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack

PUPILS = 320


def _phone(n: int) -> str:
    return f"+4477009{n:05d}"


async def _all_sent(engine: Any, expected: int) -> bool:
    async with engine.connect() as conn:
        statuses = (await conn.execute(select(notifications.c.status))).scalars().all()
    return len(statuses) == expected and set(statuses) == {"sent"}


@pytest.mark.postgres
async def test_two_replicas_of_each_service_text_each_absent_pupils_parent_once(
    amqp_url: str, broker: Any, postgres_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    absent = set(rng.sample(range(PUPILS), 60))
    # A parent rings in for some of them; the amendment may reach the other replica first.
    explained = set(rng.sample(sorted(absent), 15))
    first = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=postgres_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path) as stack:
        triage2 = TriageService(stack.triage_settings, stack.clock, run_scheduler=False)
        notifier2 = NotifierService(stack.notifier_settings, stack.clock)
        await triage2.start()
        await notifier2.start()
        try:
            await stack.put_school(school([
                pupil(f"P{n:03d}", f"Child{n}", contacts=[contact(1, phone=_phone(n), email=None)])
                for n in range(PUPILS)
            ]))
            stack.at(9, 15)
            events = [mark(f"P{n:03d}", "N" if n in absent else "/", recorded=first)
                      for n in range(PUPILS)]
            events += [mark(f"P{n:03d}", "I", recorded=first + dt.timedelta(minutes=10))
                       for n in sorted(explained)]
            rng.shuffle(events)  # arrival order is not recording order
            await stack.publish(*events)
            replicas = [stack.triage.consumer, triage2.consumer]
            async with asyncio.timeout(30):
                while sum(c.settled for c in replicas if c) < len(events):
                    await asyncio.sleep(0.05)
            assert all(c is not None and c.settled > 0 for c in replicas), "both replicas worked"

            stack.at(9, 30)
            assert stack.triage.scheduler and triage2.scheduler
            settled = await asyncio.gather(stack.triage.scheduler.run_due(),
                                           triage2.scheduler.run_due())
            assert sum(settled) == len(absent - explained), "each due contact settled once"
            assert stack.triage.relay and triage2.relay
            await asyncio.gather(stack.triage.relay.publish_pending(),
                                 triage2.relay.publish_pending())

            expected = sorted(_phone(n) for n in absent - explained)
            await twilio.wait_for_messages(len(expected), timeout=30)
            async with asyncio.timeout(30):
                while not await _all_sent(stack.notifier.engine, len(expected)):
                    await asyncio.sleep(0.05)
            sent = Counter(m["to"] for m in twilio.messages)
            assert {to: n for to, n in sent.items() if n > 1} == {}, "nobody texted twice"
            assert sorted(sent) == expected
        finally:
            await notifier2.stop()
            await triage2.stop()
