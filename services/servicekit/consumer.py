"""A batching consumer with manual acks.

Messages are applied a batch per database transaction and acked only after it commits, so a
crash loses nothing (the broker redelivers). Bad input is dead-lettered with a reason and
acked; a message whose handling keeps failing is dead-lettered after the delivery limit so it
cannot stall the queue; an unreachable database pauses consumption instead of burning
deliveries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue
from broker_messages.topology import DELIVERY_LIMIT
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from servicekit.broker import dead_letter, delivery_count

log = logging.getLogger(__name__)

T = TypeVar("T")
# For each item: None when it was applied, or the reason it is rejected as bad input.
BatchHandler = Callable[[list[T]], Awaitable[list[str | None]]]


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
    return isinstance(error, DBAPIError) and error.connection_invalidated


async def _ack_all(messages: list[AbstractIncomingMessage]) -> None:
    """One `multiple` ack per channel instead of one frame per message. Everything below the
    highest tag on a channel has been settled by then (applied here, or dead-lettered and
    acked just before), and after a reconnect a batch can hold deliveries of two channels."""
    highest: dict[int, AbstractIncomingMessage] = {}
    for message in messages:
        key = id(message.channel)
        if key not in highest or highest[key].delivery_tag < message.delivery_tag:  # type: ignore[operator]
            highest[key] = message
    for message in highest.values():
        await message.ack(multiple=True)


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
    ) -> None:
        self._name = name
        self._parse = parse
        self._handle = handle
        self._dead = dead_exchange
        self._batch_size = batch_size
        self._on_dead_letter = on_dead_letter
        self._on_applied = on_applied
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._tag: str | None = None
        self._queue: AbstractQueue | None = None
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
        self._tag = await queue.consume(self._inbox.put)

    async def stop(self) -> None:
        if self._queue is not None and self._tag is not None:
            try:
                await asyncio.wait_for(self._queue.cancel(self._tag), timeout=5)
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

    async def process(self, batch: list[AbstractIncomingMessage]) -> None:
        parsed: list[tuple[AbstractIncomingMessage, T]] = []
        for message in batch:
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

    async def _apply(self, items: list[tuple[AbstractIncomingMessage, T]]) -> None:
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

    async def _give_up_or_retry(self, message: AbstractIncomingMessage) -> None:
        deliveries = delivery_count(message) + 1
        log.exception("%s.message.failed message_id=%s delivery=%d", self._name,
                      message.message_id, deliveries)
        if deliveries >= DELIVERY_LIMIT:
            await self._reject(message, f"handler failed on {deliveries} deliveries")
        else:
            await message.nack(requeue=True)

    async def _reject(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.warning("%s.message.dead_lettered message_id=%s reason=%s", self._name,
                    message.message_id, reason[:200])
        await dead_letter(self._dead, message, reason)
        self._on_dead_letter(reason.split(":")[0])
        await self._count_settled(1)
