"""Consumption rates from a full queue: the bare aio-pika ceiling, then triage itself."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aio_pika
import aiormq.abc
from broker_messages import topology
from pydantic import SecretStr
from servicekit.clock import Clock
from servicekit.runtime import freeze_startup_objects
from sqlalchemy.ext.asyncio import AsyncEngine
from triage.app import TriageService
from triage.migrations import upgrade
from triage.settings import TriageSettings

from bench.infra import SIGNING_KEY, publish, queue_state

BARE_QUEUE = "bench.bare-consumer"


@dataclass
class Rate:
    count: int
    seconds: float
    publish_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @property
    def publish_per_second(self) -> float:
        return self.count / self.publish_seconds


async def bare_consume(amqp_url: str, bodies: list[bytes], prefetch: int,
                       underlay: bool = False) -> Rate:
    """Consume and ack every message, one ack per message as triage does, from a quorum queue
    with triage's arguments and prefetch: what this broker and client allow at most.

    `underlay`: take deliveries from the aiormq channel under aio-pika's, as
    `servicekit.consumer.BatchConsumer` does (no `IncomingMessage` and no task per delivery);
    its ratio to the aio-pika consumer is what that plumbing is worth."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            BARE_QUEUE, durable=True,
            arguments=topology.quorum_arguments(topology.EVENTS_DEAD_EXCHANGE))
        published = await publish(channel.default_exchange, BARE_QUEUE, bodies)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=prefetch)
        done = asyncio.Event()
        acked = 0

        def count() -> None:
            nonlocal acked
            acked += 1
            if acked >= len(bodies):
                done.set()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            count()

        raw = await consuming.get_underlay_channel()

        async def on_delivery(message: aiormq.abc.DeliveredMessage) -> None:
            assert message.delivery_tag is not None
            await raw.basic_ack(message.delivery_tag)
            count()

        freeze_startup_objects()  # as for triage below: the harness's data is not timed
        started = time.perf_counter()
        if underlay:
            tag = (await raw.basic_consume(BARE_QUEUE, on_delivery)).consumer_tag
        else:
            tag = await (await consuming.get_queue(BARE_QUEUE)).consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=600)
        seconds = time.perf_counter() - started
        assert tag is not None
        if underlay:
            await raw.basic_cancel(tag)
        else:
            await (await consuming.get_queue(BARE_QUEUE)).cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return Rate(len(bodies), seconds, published)
    finally:
        await connection.close()


def triage_settings(amqp_url: str, database_url: str, **extra: object) -> TriageSettings:
    return TriageSettings(amqp_url=amqp_url, database_url=database_url,
                          contact_signing_key=SecretStr(SIGNING_KEY), **extra)


async def fill_triage_queue(amqp_url: str, bodies: list[bytes]) -> float:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_events(channel)
        exchange = await channel.get_exchange(topology.EVENTS_EXCHANGE)
        return await publish(exchange, "register.mark", bodies)
    finally:
        await connection.close()


async def dead_lettered(amqp_url: str) -> int:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        return (await queue_state(connection, topology.EVENTS_DEAD_QUEUE))[0]
    finally:
        await connection.close()


async def triage_in_process(amqp_url: str, database_url: str, clock: Clock,
                            bodies: list[bytes],
                            engine: AsyncEngine | None = None) -> tuple[Rate, TriageService]:
    """Publish the burst first, then start triage (scheduler off) and time it from start to
    the last event settled. Returns the running service: the caller stops it."""
    published = await fill_triage_queue(amqp_url, bodies)
    service = TriageService(triage_settings(amqp_url, database_url), clock, run_scheduler=False,
                            engine=engine)
    await upgrade(service.engine)  # schema work is not consumption: keep it out of the timing
    # The benchmark's own data (a generated authority, every message body) shares this
    # process: as the deployed service does with its start-up objects, keep it out of the
    # collector's full passes, or they would walk it over and over and be timed as triage.
    freeze_startup_objects()
    started = time.perf_counter()
    await service.start()
    assert service.consumer is not None
    await service.consumer.wait_settled(len(bodies), timeout=max(120.0, len(bodies) / 100))
    return Rate(len(bodies), time.perf_counter() - started, published), service
