"""A batching consumer with manual acks.

Messages are applied a batch per database transaction and acked only after it commits, so a
crash loses nothing (the broker redelivers). Bad input is dead-lettered with a reason and
acked; a message whose handling keeps failing is dead-lettered after the delivery limit so it
cannot stall the queue; an unreachable database pauses consumption instead of burning
deliveries.

Deliveries are taken from the channel underneath aio-pika as they arrive: wrapping each one
in an `IncomingMessage` and a task of its own cost a third of what a busy morning spent per
mark. The robust channel still declares, reconnects and restores everything else; after it
reopens, the consumer subscribes again on the new channel (`_resubscribe`).

Private interfaces: the aiormq channel under aio-pika's robust one (`get_underlay_channel()`,
`reopen_callbacks`, `on_consumer_cancel_callbacks`) and aiormq's `basic_consume`, `basic_ack`,
`basic_nack` and `DeliveredMessage`, below aio-pika's own consumer. Tested on the versions
pyproject.toml pins (aio-pika >=10.2.1,<10.3, aiormq >=7.2.4,<7.3) by the consumer and
broker tests (tests/test_poison_messages.py, tests/test_broker_faults.py). Measured by
`make bench` in the same run against aio-pika's own consumer ("bare consume-and-ack on the
aiormq channel underneath"): x1.21, x1.71 and x1.40 of its rate in three quick runs. If that ratio
falls to about x1, consume through `queue.consume` instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustQueue,
)
from aiormq.abc import DeliveredMessage
from asyncpg.exceptions import TargetServerAttributeNotMatched
from broker_messages.topology import DELIVERY_LIMIT
from pamqp import commands as spec
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from servicekit.broker import dead_letter, delivery_count, delivery_tag

log = logging.getLogger(__name__)

T = TypeVar("T")
# For each item: None when it was applied, or the reason it is rejected as bad input.
BatchHandler = Callable[[list[T]], Awaitable[list[str | None]]]
# Given a message's headers and body: None to go on, or why the message is refused unread.
Verifier = Callable[[Mapping[str, Any] | None, bytes], str | None]


def describe_invalid(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        return f"invalid event: {problems}"
    return f"invalid event: {error}"


def _is_infrastructure_error(error: BaseException) -> bool:
    if isinstance(error, OperationalError | OSError | ConnectionError | TimeoutError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    # Every server the URL names answered and none accepts writes: a standby not yet promoted
    # (asyncpg's error, which SQLAlchemy passes on as an internal one).
    return error.connection_invalidated or isinstance(
        error.orig.__cause__ if error.orig else None, TargetServerAttributeNotMatched)


async def _ack_all(messages: list[DeliveredMessage]) -> None:
    """One `multiple` ack per channel instead of one frame per message. Everything below the
    highest tag on a channel has been settled by then (applied here, or dead-lettered and
    acked just before), and after a reconnect a batch can hold deliveries of two channels."""
    highest: dict[int, DeliveredMessage] = {}
    for message in messages:
        key = id(message.channel)
        if key not in highest or delivery_tag(highest[key]) < delivery_tag(message):
            highest[key] = message
    for message in highest.values():
        await message.channel.basic_ack(delivery_tag(message), multiple=True)


class BatchConsumer(Generic[T]):
    def __init__(
        self,
        *,
        name: str,
        parse: Callable[[bytes], T],
        handle: BatchHandler[T],
        dead_exchange: AbstractExchange,
        batch_size: int,
        on_dead_letter: Callable[[str], None] = lambda reason: None,
        on_applied: Callable[[int], None] = lambda count: None,
        verify: Verifier | None = None,
    ) -> None:
        self._name = name
        self._verify = verify
        self._parse = parse
        self._handle = handle
        self._dead = dead_exchange
        self._batch_size = batch_size
        self._on_dead_letter = on_dead_letter
        self._on_applied = on_applied
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        self._tag: str | None = None
        self._queue: AbstractQueue | None = None
        self._stopping = False
        self._recovery: asyncio.Task[None] | None = None
        # Messages acked or dead-lettered so far, for operators and for tests to await.
        self.settled = 0
        self._progress = asyncio.Condition()

    async def wait_settled(self, count: int, timeout: float = 10.0) -> None:
        """Wait until at least `count` messages have been acked or dead-lettered."""
        async with asyncio.timeout(timeout):
            async with self._progress:
                await self._progress.wait_for(lambda: self.settled >= count)

    async def _count_settled(self, count: int) -> None:
        async with self._progress:
            self.settled += count
            self._progress.notify_all()

    async def start(self, queue: AbstractQueue) -> None:
        self._queue = queue
        if isinstance(queue.channel, AbstractRobustChannel):
            queue.channel.reopen_callbacks.add(self._resubscribe)
        await self._subscribe(queue.channel)

    async def _subscribe(self, channel: AbstractChannel) -> None:
        assert self._queue is not None
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_cancelled)
        subscribed = await underlay.basic_consume(self._queue.name, self._deliver)
        self._tag = subscribed.consumer_tag

    def _on_cancelled(self, frame: spec.Basic.Cancel) -> None:
        """The broker ended the subscription (the queue was deleted): declare the queue and
        its bindings again and resubscribe, as aio-pika does for its own consumers."""
        if frame.consumer_tag != self._tag or self._stopping:
            return
        log.error("%s.consumer.cancelled_by_broker", self._name)
        self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        assert self._queue is not None
        queue = self._queue
        async for attempt in AsyncRetrying(wait=wait_exponential_jitter(initial=0.2, max=10)):
            with attempt:
                if self._stopping:
                    return
                if isinstance(queue, AbstractRobustQueue):
                    await queue.restore()  # declare, and bind as before
                else:
                    await queue.declare()
                await self._subscribe(queue.channel)
        log.info("%s.consumer.resubscribed", self._name)

    async def _deliver(self, message: DeliveredMessage) -> None:
        self._inbox.put_nowait(message)  # unbounded, but the broker sends at most `prefetch`

    async def _resubscribe(self, channel: AbstractChannel | None) -> None:
        """After a reconnect: deliveries of the old channel still queued here fail to ack
        and come back from the broker, so applying them again is harmless (idempotent)."""
        if self._stopping or channel is None:
            return
        try:
            await self._subscribe(channel)
            log.info("%s.consumer.resubscribed", self._name)
        except Exception:  # the next reopen tries again
            log.exception("%s.consumer.resubscribe_failed", self._name)

    async def stop(self) -> None:
        self._stopping = True
        if self._queue is not None and self._tag is not None:
            try:
                underlay = await self._queue.channel.get_underlay_channel()
                await asyncio.wait_for(underlay.basic_cancel(self._tag), timeout=5)
            except Exception:  # noqa: BLE001 - the channel may already be gone
                log.debug("%s.consumer.cancel_failed", self._name)

    async def run(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self._batch_size and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                await self.process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # redelivers whatever we could not ack, so keep consuming.
                log.exception("%s.batch.unsettled size=%d", self._name, len(batch))

    async def process(self, batch: list[DeliveredMessage]) -> None:
        parsed: list[tuple[DeliveredMessage, T]] = []
        for message in batch:
            if self._verify is not None and (refusal := self._verify(
                    message.header.properties.headers, message.body)) is not None:
                await self._reject(message, refusal)
                continue
            try:
                parsed.append((message, self._parse(message.body)))
            except ValueError as error:
                await self._reject(message, describe_invalid(error))
        if not parsed:
            return
        try:
            await self._apply(parsed)
        except Exception:  # noqa: BLE001 - isolate the message that fails
            if len(parsed) == 1:
                await self._give_up_or_retry(parsed[0][0])
                return
            log.warning("%s.batch.failed size=%d: applying one by one", self._name, len(parsed))
            for item in parsed:
                try:
                    await self._apply([item])
                except Exception:  # noqa: BLE001
                    await self._give_up_or_retry(item[0])

    async def _apply(self, items: list[tuple[DeliveredMessage, T]]) -> None:
        # Waits out an unreachable database with the messages held unacked.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_infrastructure_error),
            wait=wait_exponential_jitter(initial=0.2, max=10),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "%s.database.unavailable attempt=%d", self._name, state.attempt_number
            ),
        ):
            with attempt:
                verdicts = await self._handle([value for _, value in items])
        applied = []
        for (message, _), reason in zip(items, verdicts, strict=True):
            if reason is None:
                applied.append(message)
            else:
                await self._reject(message, reason)
        await _ack_all(applied)
        await self._count_settled(len(applied))
        self._on_applied(len(applied))

    async def _give_up_or_retry(self, message: DeliveredMessage) -> None:
        deliveries = delivery_count(message) + 1
        log.exception("%s.message.failed message_id=%s delivery=%d", self._name,
                      message.header.properties.message_id, deliveries)
        if deliveries >= DELIVERY_LIMIT:
            await self._reject(message, f"handler failed on {deliveries} deliveries")
        else:
            await message.channel.basic_nack(delivery_tag(message), requeue=True)

    async def _reject(self, message: DeliveredMessage, reason: str) -> None:
        log.warning("%s.message.dead_lettered message_id=%s reason=%s", self._name,
                    message.header.properties.message_id, reason[:200])
        await dead_letter(self._dead, message, reason)
        self._on_dead_letter(reason.split(":")[0])
        await self._count_settled(1)
