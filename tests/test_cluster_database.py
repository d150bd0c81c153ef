"""The PostgreSQL primary killed mid-morning and its standby promoted: both services carry
on without a restart, and every expected text reaches the Twilio stub exactly once. And a
consumer whose database is a standby not yet promoted holds its messages until it is. And
why the standby must be synchronous: an asynchronous one loses commits already acknowledged.

Triage and the notifier run as real processes (as in tests/test_crash_recovery.py) on the real
RabbitMQ, against a primary and a synchronous streaming standby of the test's own
(tests/pg_standby.py). Their database URLs name both servers with
`target_session_attrs=read-write`, so each new connection finds whichever one accepts writes.
The recovery times are printed (run with `-s` to see them)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from broker_messages import topology
from broker_messages.topology import DELIVERY_LIMIT
from servicekit import broker as broker_kit
from servicekit.consumer import BatchConsumer
from servicekit.database import make_engine
from sqlalchemy import text

from tests import pg_standby
from tests.factories import LONDON, contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_stub import TwilioStub
from tests.processes import ServiceProcess, base_environment, clock_offset_to
from tests.stack import SIGNING_KEY

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not pg_standby.available(),
                       reason="needs PostgreSQL's server binaries and root to run them"),
]

PUPILS = 150
ABSENT = set(range(0, PUPILS, 4))  # 38 first-day contacts
BEFORE_THE_KILL = 100  # marks published before the primary dies; the rest arrive after
TOKEN = "cluster-test-token"


def _phone(n: int) -> str:
    return f"+4477009{n:05d}"


@pytest.fixture
def pair() -> Iterator[pg_standby.StandbyPair]:
    """A pair of its own for each test: a test ends with its standby promoted."""
    with pg_standby.standby_pair() as running:
        yield running


@dataclass
class Services:
    triage: ServiceProcess
    notifier: ServiceProcess


@pytest.fixture
async def services(pair: pg_standby.StandbyPair, amqp_url: str, broker: Any,
                   twilio: TwilioStub, smtp: SmtpSink, tmp_path: Path,
                   ) -> AsyncIterator[Services]:
    admin = await asyncpg.connect(pair.dsn(pair.primary))
    try:
        for name in ("triage", "notifier"):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    env = base_environment() | {
        "AMQP_URL": amqp_url, "API_TOKEN": TOKEN, "CONTACT_SIGNING_KEY": SIGNING_KEY,
        "TRIAGE_DATABASE_URL": pair.url("triage"),
        "NOTIFIER_DATABASE_URL": pair.url("notifier"),
        "CLOCK_OFFSET_SECONDS": clock_offset_to(dt.datetime(2026, 11, 23, 9, 40, tzinfo=LONDON)),
        "TRIAGE_SCHEDULER_POLL_SECONDS": "0.2", "NOTIFIER_DISPATCH_POLL_SECONDS": "0.2",
        "TWILIO_ACCOUNT_SID": twilio.account_sid, "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM": "+447700900999", "TWILIO_API_BASE": twilio.base_url,
        "SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port),
        "NOTIFIER_PROVIDER_TIMEOUT": "1", "NOTIFIER_SEND_ATTEMPTS": "3",
        "NOTIFIER_RETRY_INITIAL_SECONDS": "0.05", "NOTIFIER_RETRY_MAX_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    running = Services(ServiceProcess("triage", env, tmp_path),
                       ServiceProcess("notifier", env, tmp_path))
    running.triage.start()
    await running.triage.ready()  # migrations first, so the two never race to create the schema
    running.notifier.start()
    await running.notifier.ready()
    try:
        yield running
    finally:
        running.triage.stop()
        running.notifier.stop()


async def _publish(broker: Any, pupils: range) -> None:
    channel = await broker.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
    recorded = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    for n in pupils:
        event = mark(f"P{n:03d}", "N" if n in ABSENT else "/", recorded=recorded)
        await exchange.publish(
            aio_pika.Message(json.dumps(event).encode(),
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="register.mark")
    await channel.close()


async def _count(dsn: str, query: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def _progress(pair: pg_standby.StandbyPair, server: pg_standby.Server) -> int:
    """Marks stored plus texts recorded as sent: grows with every commit that does work."""
    marks = await _count(pair.dsn(server, "triage"), "SELECT count(*) FROM marks")
    sent = await _count(pair.dsn(server, "notifier"),
                        "SELECT count(*) FROM notifications WHERE status = 'sent'")
    return marks + sent


async def _quiet(pair: pg_standby.StandbyPair) -> bool:
    """Every mark stored, no decision left to act on, no message left to send."""
    server = pair.standby
    marks = await _count(pair.dsn(server, "triage"), "SELECT count(*) FROM marks")
    # Only this morning's: an N's re-code check waits five school days, by design.
    pending = await _count(pair.dsn(server, "triage"),
                           "SELECT count(*) FROM scheduled_actions WHERE status = 'pending' "
                           "AND due_at < '2026-11-24T00:00:00+00:00'")
    outbox = await _count(pair.dsn(server, "triage"), "SELECT count(*) FROM outbox")
    unsent = await _count(pair.dsn(server, "notifier"),
                          "SELECT count(*) FROM notifications "
                          "WHERE status IN ('pending', 'sending')")
    return marks == PUPILS and pending == outbox == unsent == 0


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Poll another process's progress (a child process offers no event to await)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def _status(client: httpx.AsyncClient, service: ServiceProcess, code: int) -> bool:
    return (await client.get(f"{service.url}/readyz")).status_code == code


async def test_primary_killed_mid_morning_standby_promoted_nothing_lost_or_doubled(
    pair: pg_standby.StandbyPair, services: Services, broker: Any, twilio: TwilioStub,
) -> None:
    roster = school([
        pupil(f"P{n:03d}", f"Child{n}", contacts=[contact(1, phone=_phone(n), email=None)])
        for n in range(PUPILS)
    ])
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = await client.put(f"{services.triage.url}/api/v1/schools/{roster['urn']}",
                                    json=roster)
        assert response.status_code == 200, response.text

        await _publish(broker, range(BEFORE_THE_KILL))
        # Mid-morning: marks still arriving and texts going out when the primary dies.
        await _until(lambda: _texts_at_least(twilio, 3), timeout=30)
        pair.kill_primary()
        killed = time.monotonic()
        await _publish(broker, range(BEFORE_THE_KILL, PUPILS))
        # Both services notice: no server accepts writes until the standby is promoted.
        await _until(lambda: _status(client, services.triage, 503), timeout=30)
        await _until(lambda: _status(client, services.notifier, 503), timeout=30)
        before = await _progress(pair, pair.standby)
        pair.promote_standby()
        promoted = time.monotonic()

        async def progressed() -> bool:
            return await _progress(pair, pair.standby) > before

        await _until(progressed, timeout=60)
        first_commit = time.monotonic()
        await twilio.wait_for_messages(len(ABSENT), timeout=90)
        await _until(lambda: _quiet(pair), timeout=60)
        finished = time.monotonic()
        assert await _status(client, services.triage, 200)
        assert await _status(client, services.notifier, 200)

    sent = Counter(message["to"] for message in twilio.messages)
    doubled = {to: n for to, n in sent.items() if n > 1}
    assert not doubled, f"texted twice: {doubled}"
    assert sorted(sent) == sorted(_phone(n) for n in ABSENT), "every absent pupil's parent"
    # Every event recorded as received (once: its id is the key), as every mark was stored.
    assert await _count(pair.dsn(pair.standby, "triage"),
                        "SELECT count(*) FROM received_events") == PUPILS
    for service in (services.triage, services.notifier):
        assert service.process is not None and service.process.poll() is None, (
            f"{service.module} restarted or died: see {service.log_path}")
    print(f"\nPostgreSQL failover: promoted {promoted - killed:.2f} s after the kill; "
          f"first commit {first_commit - killed:.2f} s after the kill "
          f"({first_commit - promoted:.2f} s after the promotion); "
          f"morning finished {finished - killed:.2f} s after the kill")


async def _texts_at_least(twilio: TwilioStub, count: int) -> bool:
    return len(twilio.messages) >= count


async def test_a_standby_not_yet_promoted_holds_the_batch_instead_of_dead_lettering_it(
    pair: pg_standby.StandbyPair, amqp_url: str,
) -> None:
    """The URL names only servers that refuse writes (the standby, before its promotion).
    That is the database being away, not a bad message: the consumer keeps the message
    unacked, past the delivery limit, and applies it once the standby is promoted."""
    admin = await asyncpg.connect(pair.dsn(pair.primary))
    try:
        await admin.execute("CREATE TABLE applied (body text PRIMARY KEY)")
    finally:
        await admin.close()
    engine = make_engine(pair.url("postgres", servers=(pair.standby,)))
    attempts = 0
    beyond_the_limit = asyncio.Event()

    async def handle(bodies: list[bytes]) -> list[str | None]:
        nonlocal attempts
        attempts += 1
        if attempts > DELIVERY_LIMIT:
            beyond_the_limit.set()
        async with engine.begin() as conn:
            for body in bodies:
                await conn.execute(text("INSERT INTO applied VALUES (:body)"),
                                   {"body": body.decode()})
        return [None] * len(bodies)

    name = f"test.standby.{uuid.uuid4().hex[:8]}"
    connection = await broker_kit.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(f"{name}.x", "direct", auto_delete=True)
        queue = await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT})
        await queue.bind(exchange, routing_key="k")
        consumer: BatchConsumer[bytes] = BatchConsumer(
            name="test", parse=bytes, handle=handle, dead_exchange=exchange, batch_size=10)
        worker = asyncio.create_task(consumer.run())
        await consumer.start(queue)
        await exchange.publish(aio_pika.Message(b"mark"), routing_key="k")
        settled = asyncio.create_task(consumer.wait_settled(1, timeout=60))
        held = asyncio.create_task(beyond_the_limit.wait())
        await asyncio.wait({settled, held}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert held.done() and consumer.settled == 0, (
            "the message was settled (dead-lettered) while no server accepted writes")
        pair.promote_standby()
        await settled
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT body FROM applied"))).scalars().all()
        assert rows == ["mark"]
        await consumer.stop()
        worker.cancel()
        await channel.queue_delete(name)
    finally:
        await connection.close()
        await engine.dispose()


async def _commit_while_the_standby_hears_nothing(pair: pg_standby.StandbyPair) -> str:
    """Pause the primary's walsender, insert a row on the primary, and lose the primary's
    machine: "acknowledged" if the commit returned first, "refused" if it was still waiting
    (for the standby) when the machine went. The row's fate is then read on the promoted
    standby."""
    primary = await asyncpg.connect(pair.dsn(pair.primary))
    try:
        await primary.execute("CREATE TABLE acked (n int)")

        async def table_on_the_standby() -> bool:  # the asynchronous one may lag behind
            return await _count(pair.dsn(pair.standby),
                                "SELECT count(*) FROM pg_tables WHERE tablename = 'acked'") == 1

        await _until(table_on_the_standby, timeout=30)
        walsender = await primary.fetchval("SELECT pid FROM pg_stat_replication")
        pair.pause(walsender)
        inserting = asyncio.create_task(primary.execute("INSERT INTO acked VALUES (1)"))
        watcher = await asyncpg.connect(pair.dsn(pair.primary))
        try:
            async def settled_or_waiting() -> bool:
                # Synchronous: the backend waits on the standby (wait event SyncRep).
                return inserting.done() or await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") > 0
            await _until(settled_or_waiting, timeout=30)
        finally:
            await watcher.close()
        pair.kill_primary_machine()
        outcome = "refused"
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await inserting
            outcome = "acknowledged"
    finally:
        primary.terminate()
    return outcome


async def _rows_after_promotion(pair: pg_standby.StandbyPair) -> int:
    pair.promote_standby()
    return await _count(pair.dsn(pair.standby), "SELECT count(*) FROM acked")


async def test_a_synchronous_standby_loses_no_acknowledged_commit() -> None:
    with pg_standby.standby_pair(synchronous=True) as pair:
        assert await _commit_while_the_standby_hears_nothing(pair) == "refused", (
            "a commit returned before the standby had it")
        assert await _rows_after_promotion(pair) == 0  # never acknowledged, so never relied on


async def test_an_asynchronous_standby_loses_an_acknowledged_commit() -> None:
    """Why the fixture (and a deployment) must be synchronous (docs/reliability.md): the
    services ack a mark to the broker once its commit returns."""
    with pg_standby.standby_pair(synchronous=False) as pair:
        assert await _commit_while_the_standby_hears_nothing(pair) == "acknowledged"
        assert await _rows_after_promotion(pair) == 0, "the acknowledged row survived"
