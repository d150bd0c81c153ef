"""The broker and the database go away mid-flight: nothing is lost, nothing is doubled.

A TCP proxy sits between the services and RabbitMQ (or PostgreSQL) so a test can cut every
connection or refuse new ones, as a network fault or a restart would."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from notifier.models import notifications
from servicekit import broker as broker_kit
from servicekit.consumer import BatchConsumer
from sqlalchemy import func, select
from triage.models import marks

from tests.factories import contact, mark, pupil, school
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.twilio_stub import TwilioStub
from tests.stack import Stack

PUPILS = 60
ABSENT = {f"P{n:03d}" for n in range(0, PUPILS, 3)}  # every third pupil: 20 absent


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait for a condition the system reaches on its own (reconnects have no event to await)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


def _school() -> dict[str, Any]:
    return school([
        pupil(f"P{n:03d}", f"Child{n}", contacts=[contact(1, phone=f"+4477009{n:05d}", email=None)])
        for n in range(PUPILS)
    ])


def _morning() -> list[dict[str, Any]]:
    return [mark(f"P{n:03d}", "N" if f"P{n:03d}" in ABSENT else "/") for n in range(PUPILS)]


async def _stored_marks(stack: Stack) -> int:
    async with stack.triage.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(marks))).scalar_one())


async def _expect_one_text_per_absent_pupil(stack: Stack) -> None:
    texts = await stack.twilio.wait_for_messages(len(ABSENT), timeout=30)
    await eventually(lambda: _all_settled(stack))
    assert sorted(t["to"] for t in stack.twilio.messages) == sorted(
        f"+4477009{int(p[1:]):05d}" for p in ABSENT
    ), "every absent pupil's parent texted exactly once"
    assert len(texts) == len(ABSENT)


async def _all_settled(stack: Stack) -> bool:
    async with stack.notifier.engine.connect() as conn:
        statuses = (await conn.execute(select(notifications.c.status))).scalars().all()
    return len(statuses) == len(ABSENT) and set(statuses) == {"sent"}


@pytest.fixture
async def amqp_proxy() -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        yield proxy


async def test_connection_cut_mid_consume_and_mid_publish_loses_and_doubles_nothing(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path, amqp_proxy: TcpProxy,
) -> None:
    async with Stack(amqp_url=_through(amqp_url, amqp_proxy), broker=broker,
                     database_url=database_url, twilio=twilio, smtp=smtp,
                     workdir=tmp_path) as stack:
        assert (await stack.put_school(_school())).status_code == 200
        await stack.publish(*_morning())
        assert stack.triage.consumer is not None
        await stack.triage.consumer.wait_settled(PUPILS // 4)
        amqp_proxy.cut()  # mid-consume: unacked deliveries come back after the reconnect
        await eventually(lambda: _stored_marks_equal(stack, PUPILS))

        stack.at(9, 30)
        assert stack.triage.scheduler is not None and stack.triage.relay is not None
        assert await stack.triage.scheduler.run_due() == len(ABSENT)
        publishing = asyncio.create_task(stack.triage.relay.publish_pending())
        await asyncio.sleep(0)  # let the relay start publishing, then cut under it
        amqp_proxy.cut()
        with contextlib.suppress(Exception):  # the relay sees the cut; its loop retries later
            await publishing
        await _expect_one_text_per_absent_pupil(stack)
        assert amqp_proxy.connections >= 3, "services reconnected through the proxy"


async def _stored_marks_equal(stack: Stack, expected: int) -> bool:
    return await _stored_marks(stack) == expected


async def test_readyz_reports_503_while_the_broker_is_away_and_recovers(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path, amqp_proxy: TcpProxy,
) -> None:
    async with Stack(amqp_url=_through(amqp_url, amqp_proxy), broker=broker,
                     database_url=database_url, twilio=twilio, smtp=smtp,
                     workdir=tmp_path) as stack:
        assert (await stack.triage_api.get("/readyz")).status_code == 200
        amqp_proxy.refuse()

        async def status(api: Any, code: int) -> bool:
            return (await api.get("/readyz")).status_code == code

        await eventually(lambda: status(stack.triage_api, 503))
        await eventually(lambda: status(stack.notifier_api, 503))
        assert (await stack.triage_api.get("/readyz")).json()["broker"] is False
        # Marks published while triage is cut off wait in the queue.
        await stack.put_school(_school())
        await stack.publish(*_morning())
        amqp_proxy.accept()
        await eventually(lambda: status(stack.triage_api, 200))
        await eventually(lambda: _stored_marks_equal(stack, PUPILS))
        stack.at(9, 30)
        await stack.run_due()
        await _expect_one_text_per_absent_pupil(stack)


@pytest.mark.postgres
async def test_postgresql_outage_holds_events_unacked_and_recovers_without_restart(
    amqp_url: str, broker: Any, postgres_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    async with TcpProxy("127.0.0.1", 5432) as pg_proxy, Stack(amqp_url=amqp_url, broker=broker,
                     database_url=_through(postgres_url, pg_proxy), twilio=twilio,
                     smtp=smtp, workdir=tmp_path) as stack:
        assert (await stack.put_school(_school())).status_code == 200
        pg_proxy.refuse()
        await stack.publish(*_morning())
        assert (await stack.triage_api.get("/readyz")).status_code == 503
        # Nothing was acked while the database was away...
        assert stack.triage.consumer is not None
        settled_during_outage = stack.triage.consumer.settled
        assert settled_during_outage == 0
        pg_proxy.accept()
        # ...and everything is applied once it is back, with no restart.
        await stack.processed(timeout=30)
        assert await _stored_marks(stack) == PUPILS
        stack.at(9, 30)
        await stack.run_due()
        await _expect_one_text_per_absent_pupil(stack)


def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to restart the broker"
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def restartable_broker() -> Iterator[None]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl to restart the local broker")
    yield
    _rabbitmqctl("start_app")  # whatever happened, leave the broker running
    _rabbitmqctl("await_startup")


async def test_rabbitmq_restart_loses_nothing_and_consumers_resume(
    amqp_url: str, broker: Any, database_url: str, twilio: TwilioStub, smtp: SmtpSink,
    tmp_path: Path, restartable_broker: None,
) -> None:
    async with Stack(amqp_url=amqp_url, broker=broker, database_url=database_url,
                     twilio=twilio, smtp=smtp, workdir=tmp_path) as stack:
        assert (await stack.put_school(_school())).status_code == 200
        await stack.publish(*_morning())
        await asyncio.to_thread(_rabbitmqctl, "stop_app")

        async def status(code: int) -> bool:
            return (await stack.triage_api.get("/readyz")).status_code == code

        await eventually(lambda: status(503))
        await asyncio.to_thread(_rabbitmqctl, "start_app")
        await asyncio.to_thread(_rabbitmqctl, "await_startup")
        await eventually(lambda: status(200), timeout=60)
        # Durable quorum queues kept what was not yet acked; the consumers came back.
        await eventually(lambda: _stored_marks_equal(stack, PUPILS), timeout=60)
        stack.at(9, 30)
        await stack.triage.scheduler.run_due()  # type: ignore[union-attr]
        await eventually(lambda: _relay_flushed(stack), timeout=60)
        await _expect_one_text_per_absent_pupil(stack)


async def _relay_flushed(stack: Stack) -> bool:
    assert stack.triage.relay is not None
    with contextlib.suppress(Exception):
        await stack.triage.relay.publish_pending()
        return True
    return False


async def test_a_consumer_the_broker_cancels_declares_its_queue_again_and_goes_on(
    amqp_url: str,
) -> None:
    """Deleting a queue cancels its consumers. The consumer declares the queue (and its
    bindings) again and resubscribes, so what is published afterwards is still applied."""
    name = f"test.cancelled.{uuid.uuid4().hex[:8]}"
    applied: list[bytes] = []

    async def handle(bodies: list[bytes]) -> list[str | None]:
        applied.extend(bodies)
        return [None] * len(bodies)

    connection = await broker_kit.connect(amqp_url)
    try:
        channel = await connection.channel()
        # Not auto-delete: deleting the queue removes the exchange's only binding, and an
        # auto-delete exchange would go with it before the consumer could bind again (as the
        # services' durable exchanges never do).
        exchange = await channel.declare_exchange(f"{name}.x", "direct")
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key="k")
        consumer: BatchConsumer[bytes] = BatchConsumer(
            name="test", parse=bytes, handle=handle, dead_exchange=exchange, batch_size=10)
        worker = asyncio.create_task(consumer.run())
        await consumer.start(queue)
        await exchange.publish(aio_pika.Message(b"before"), routing_key="k")
        await consumer.wait_settled(1)

        other = await connection.channel()
        await other.queue_delete(name)
        await eventually(lambda: _declared(other, name))  # the consumer declared it again
        await exchange.publish(aio_pika.Message(b"after"), routing_key="k")  # via the binding
        await consumer.wait_settled(2)
        assert applied == [b"before", b"after"]
        await consumer.stop()
        worker.cancel()
        await other.queue_delete(name)
        await other.exchange_delete(f"{name}.x")
    finally:
        await connection.close()


async def _declared(channel: Any, name: str) -> bool:
    try:
        await channel.declare_queue(name, passive=True)
        return True
    except aio_pika.exceptions.ChannelClosed:
        return False
