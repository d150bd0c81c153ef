"""RabbitMQ names and arguments. `infra/rabbitmq/definitions.json` mirrors this module
(a test keeps the two in step)."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
INBOUND_UNMATCHED_ROUTING_KEY = "inbound.unmatched"
FAMILY_OPTED_OUT_ROUTING_KEY = "family.opted_out"
NOTIFIER_EVENT_ROUTING_KEYS = (REPLY_ROUTING_KEY, FAMILY_UNREACHABLE_ROUTING_KEY,
                               INBOUND_UNMATCHED_ROUTING_KEY, FAMILY_OPTED_OUT_ROUTING_KEY)
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


# docs/security.md "Broker": one broker user per party, each allowed only what it does.
# `infra/rabbitmq/definitions.json` declares the same users and permissions (a test keeps the
# two in step, another applies them to a real broker).
PUBLISHER_USER = "absence-publisher"
TRIAGE_USER = "absence-triage"
NOTIFIER_USER = "absence-notifier"


@dataclass(frozen=True)
class BrokerPermissions:
    """The exchanges and queues a user may configure (declare, delete), write (publish to an
    exchange; bind a queue as a destination) and read (consume a queue; bind from an
    exchange as a source), as RabbitMQ checks them."""

    user: str
    configure: tuple[str, ...]
    write: tuple[str, ...]
    read: tuple[str, ...]

    def patterns(self) -> tuple[str, str, str]:
        """RabbitMQ's configure, write and read regular expressions: exactly these names."""
        return (_exactly(self.configure), _exactly(self.write), _exactly(self.read))


def _exactly(names: tuple[str, ...]) -> str:
    # "^$" matches no resource: RabbitMQ's way of granting nothing. Our names hold letters,
    # dots and hyphens only, so escaping the dots is enough (and keeps the JSON readable).
    assert all(_PLAIN_NAME.fullmatch(name) for name in names), names
    return "^(" + "|".join(name.replace(".", r"\.") for name in sorted(names)) + ")$" if names else "^$"


_PLAIN_NAME = re.compile(r"[a-z][a-z.-]*")
_EVENTS_SIDE = (EVENTS_EXCHANGE, EVENTS_DEAD_EXCHANGE, EVENTS_DEAD_QUEUE, TRIAGE_QUEUE)
_REQUESTS_SIDE = (REQUESTS_EXCHANGE, REQUESTS_DEAD_EXCHANGE, REQUESTS_DEAD_QUEUE, NOTIFIER_QUEUE)
_REPLIES_SIDE = (NOTIFIER_EVENTS_EXCHANGE, REQUESTS_DEAD_EXCHANGE, REQUESTS_DEAD_QUEUE,
                 TRIAGE_REPLIES_QUEUE)


def broker_permissions() -> tuple[BrokerPermissions, ...]:
    """Who may do what; derived from what each party declares, publishes and consumes."""
    return (
        # Register marks in, nothing else: no declaring, no reading, no other exchange.
        BrokerPermissions(PUBLISHER_USER, configure=(), write=(EVENTS_EXCHANGE,), read=()),
        # Declares all three sides (declare_all) so nothing published before the notifier
        # starts is lost; consumes marks and replies; publishes contact commands, marks taken
        # over HTTP and its dead letters. It does not publish replies.
        BrokerPermissions(
            TRIAGE_USER,
            configure=tuple(dict.fromkeys(_EVENTS_SIDE + _REQUESTS_SIDE + _REPLIES_SIDE)),
            write=(EVENTS_EXCHANGE, EVENTS_DEAD_EXCHANGE, REQUESTS_EXCHANGE,
                   REQUESTS_DEAD_EXCHANGE, TRIAGE_QUEUE, EVENTS_DEAD_QUEUE, NOTIFIER_QUEUE,
                   REQUESTS_DEAD_QUEUE, TRIAGE_REPLIES_QUEUE),
            read=(EVENTS_EXCHANGE, EVENTS_DEAD_EXCHANGE, REQUESTS_EXCHANGE,
                  REQUESTS_DEAD_EXCHANGE, NOTIFIER_EVENTS_EXCHANGE, TRIAGE_QUEUE,
                  TRIAGE_REPLIES_QUEUE),
        ),
        # Declares the requests and replies sides; consumes contact commands; publishes
        # replies and its dead letters. It cannot publish contact commands or marks.
        BrokerPermissions(
            NOTIFIER_USER,
            configure=tuple(dict.fromkeys(_REQUESTS_SIDE + _REPLIES_SIDE)),
            write=(NOTIFIER_EVENTS_EXCHANGE, REQUESTS_DEAD_EXCHANGE, NOTIFIER_QUEUE,
                   REQUESTS_DEAD_QUEUE, TRIAGE_REPLIES_QUEUE),
            read=(REQUESTS_EXCHANGE, REQUESTS_DEAD_EXCHANGE, NOTIFIER_EVENTS_EXCHANGE,
                  NOTIFIER_QUEUE),
        ),
    )
