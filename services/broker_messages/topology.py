"""RabbitMQ names and arguments. `infra/rabbitmq/definitions.json` mirrors this module
(a test keeps the two in step)."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

# Contract §2: the input exchange other systems publish register marks to.
EVENTS_EXCHANGE = "attendance.events"
EVENT_ROUTING_KEYS = ("register.mark", "pupil.removed")
TRIAGE_QUEUE = "triage.attendance-events"
EVENTS_DEAD_EXCHANGE = "attendance.events.dlx"
EVENTS_DEAD_QUEUE = "attendance.events.dead"

# Internal: triage -> notifier contact requests.
REQUESTS_EXCHANGE = "notifier.requests"
CONTACT_REQUEST_ROUTING_KEY = "contact.request"
CONTACT_CANCEL_ROUTING_KEY = "contact.cancel"
REQUEST_ROUTING_KEYS = (CONTACT_REQUEST_ROUTING_KEY, CONTACT_CANCEL_ROUTING_KEY)
NOTIFIER_QUEUE = "notifier.contact-requests"
REQUESTS_DEAD_EXCHANGE = "notifier.requests.dlx"
REQUESTS_DEAD_QUEUE = "notifier.requests.dead"

# Internal: notifier -> triage events (a parent's reply).
NOTIFIER_EVENTS_EXCHANGE = "notifier.events"
REPLY_ROUTING_KEY = "reply.received"
FAMILY_UNREACHABLE_ROUTING_KEY = "family.unreachable"
NOTIFIER_EVENT_ROUTING_KEYS = (REPLY_ROUTING_KEY, FAMILY_UNREACHABLE_ROUTING_KEY)
TRIAGE_REPLIES_QUEUE = "triage.replies"

# A message that keeps failing is dead-lettered after this many deliveries
# (quorum queues count them in `x-delivery-count`).
DELIVERY_LIMIT = 5
REJECTION_REASON_HEADER = "x-rejection-reason"


def quorum_arguments(dead_letter_exchange: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": dead_letter_exchange,
        "x-delivery-limit": DELIVERY_LIMIT,
    }


async def _declare_dead_letter_pair(
    channel: AbstractChannel, exchange_name: str, queue_name: str
) -> AbstractExchange:
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(
        queue_name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange)
    return exchange


async def declare_events(channel: AbstractChannel) -> tuple[AbstractQueue, AbstractExchange]:
    """Declare the input side; returns triage's queue and the dead-letter exchange."""
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dead = await _declare_dead_letter_pair(channel, EVENTS_DEAD_EXCHANGE, EVENTS_DEAD_QUEUE)
    queue = await channel.declare_queue(
        TRIAGE_QUEUE, durable=True, arguments=quorum_arguments(EVENTS_DEAD_EXCHANGE)
    )
    for routing_key in EVENT_ROUTING_KEYS:
        await queue.bind(exchange, routing_key=routing_key)
    return queue, dead


async def declare_replies(channel: AbstractChannel) -> tuple[AbstractQueue, AbstractExchange]:
    """Declare the notifier -> triage side; returns triage's reply queue and the exchange.

    Replies that fail go to the same dead-letter queue as contact requests."""
    exchange = await channel.declare_exchange(
        NOTIFIER_EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await _declare_dead_letter_pair(channel, REQUESTS_DEAD_EXCHANGE, REQUESTS_DEAD_QUEUE)
    queue = await channel.declare_queue(
        TRIAGE_REPLIES_QUEUE, durable=True, arguments=quorum_arguments(REQUESTS_DEAD_EXCHANGE)
    )
    for routing_key in NOTIFIER_EVENT_ROUTING_KEYS:
        await queue.bind(exchange, routing_key=routing_key)
    return queue, exchange


async def declare_requests(channel: AbstractChannel) -> tuple[AbstractQueue, AbstractExchange]:
    """Declare the triage -> notifier side; returns the notifier's queue and its dead letters."""
    exchange = await channel.declare_exchange(
        REQUESTS_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dead = await _declare_dead_letter_pair(channel, REQUESTS_DEAD_EXCHANGE, REQUESTS_DEAD_QUEUE)
    queue = await channel.declare_queue(
        NOTIFIER_QUEUE, durable=True, arguments=quorum_arguments(REQUESTS_DEAD_EXCHANGE)
    )
    for routing_key in REQUEST_ROUTING_KEYS:
        await queue.bind(exchange, routing_key=routing_key)
    return queue, dead


async def declare_all(channel: AbstractChannel) -> None:
    """Everything both services use (what `infra/rabbitmq/definitions.json` mirrors)."""
    await declare_events(channel)
    await declare_requests(channel)
    await declare_replies(channel)
