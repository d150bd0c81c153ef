"""The connection to RabbitMQ (one node or several of a cluster), publishing with confirms,
and dead-lettering with a reason.

`AMQP_URL` may name several nodes of one cluster, comma-separated. aio-pika's robust
connection reconnects only to the one address it was given (aio-pika issue #141), so
`FailoverConnection` rotates through the addresses: a node that is down or frozen costs one
failed attempt, and the connection, its channels and consumers come back on the next node."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.abc import DeliveredMessage
from broker_messages.topology import REJECTION_REASON_HEADER
from yarl import URL

log = logging.getLogger(__name__)

BROKER_SCHEMES = frozenset({"amqp", "amqps"})


def broker_addresses(amqp_url: str) -> list[str]:
    """The addresses in `AMQP_URL`, in the order they are tried; ValueError unless each one is
    an amqp:// or amqps:// URL."""
    addresses = [part.strip() for part in amqp_url.split(",")]
    for address in addresses:
        if URL(address).scheme not in BROKER_SCHEMES or not URL(address).host:
            # The address itself is not repeated: it may carry a password.
            raise ValueError("every address in AMQP_URL must be an amqp:// or amqps:// URL "
                             "with a host, separated by commas")
    return addresses


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over the addresses of one cluster, tried in order.

    Every connection attempt goes through the addresses from the current one on until one
    answers; only when all fail does the attempt fail (at start: the service does not start;
    later: the robust connection waits its reconnect interval and tries them all again). A
    lost connection moves the current address on first, so the node that dropped us is tried
    last: after a kill it refuses at once, but a frozen node would hold each attempt for the
    whole connect timeout.

    Private interface: the robust connection makes each attempt in its private
    `__connect_transport` (aio-pika 10.2, the version pyproject.toml pins); this class wraps
    it. tests/test_cluster_broker.py kills and freezes the node it is connected to.
    """

    def __init__(self, addresses: Sequence[str], **kwargs: Any) -> None:
        self.addresses = tuple(URL(address) for address in addresses)
        self._current = 0
        super().__init__(self.addresses[0], **kwargs)

    def _move_on(self) -> None:
        self._current = (self._current + 1) % len(self.addresses)
        self.url = self.addresses[self._current]

    async def _RobustConnection__connect_transport(self) -> None:
        for remaining in range(len(self.addresses) - 1, -1, -1):
            try:
                await super()._RobustConnection__connect_transport()  # type: ignore[misc]
                return
            except CONNECTION_EXCEPTIONS:
                # The address's position, not the address: it may carry a password.
                log.warning("broker.address.unreachable index=%d", self._current)
                if not remaining:
                    raise
                self._move_on()

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not self._close_called:
            self._move_on()
        await super()._on_connection_close(closing)


async def connect(amqp_url: str, reconnect_interval: float = 1.0,
                  connect_timeout: float = 10.0) -> AbstractRobustConnection:
    """A robust connection to the first address of `amqp_url` that answers.

    It reconnects and re-declares what was declared on it (exchanges, queues, bindings,
    consumers), on another address when its own is gone; publishes that fail meanwhile raise
    and are retried by their caller (the outbox relay). `connect_timeout` bounds each attempt,
    so a node that accepts the TCP connection but never answers is given up."""
    connection = FailoverConnection(
        broker_addresses(amqp_url), reconnect_interval=reconnect_interval,
        client_properties={"connection_name": "absence"},
    )
    await connection.connect(timeout=connect_timeout)
    return connection


async def confirmed_channel(connection: AbstractRobustConnection) -> AbstractRobustChannel:
    channel = await connection.channel(publisher_confirms=True)
    return channel


def persistent_message(
    body: bytes, *, message_id: str | None = None, headers: dict[str, Any] | None = None
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        headers=headers or {},
    )


async def dead_letter(
    dead_exchange: AbstractExchange, message: DeliveredMessage, reason: str
) -> None:
    """Move `message` to the dead-letter queue with `reason`, then ack the original.

    The publish is confirmed before the ack, so a crash in between duplicates a dead letter
    rather than losing an event.
    """
    properties = message.header.properties
    headers = dict(properties.headers or {})
    headers[REJECTION_REASON_HEADER] = reason[:500]
    headers["x-original-routing-key"] = message.routing_key or ""
    await dead_exchange.publish(
        persistent_message(message.body, message_id=properties.message_id, headers=headers),
        routing_key=message.routing_key or "",
    )
    await message.channel.basic_ack(delivery_tag(message))


def delivery_tag(message: DeliveredMessage) -> int:
    """Every message a consumer receives has one; only an empty basic.get has none."""
    if message.delivery_tag is None:
        raise ValueError("a consumed message without a delivery tag")
    return message.delivery_tag


def delivery_count(message: DeliveredMessage) -> int:
    """How many times the broker has delivered this message before (quorum queues count)."""
    value = (message.header.properties.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def is_connected(connection: AbstractRobustConnection | None) -> bool:
    """A robust connection is never 'closed' while it reconnects; ask whether it is up now."""
    return connection is not None and not connection.is_closed and connection.connected.is_set()


async def close_quietly(connection: AbstractRobustConnection | None, timeout: float = 5.0) -> None:
    """Close without hanging on a broker that is away (a robust close waits for a reconnect)."""
    if connection is None:
        return
    try:
        await asyncio.wait_for(connection.close(), timeout)
    except Exception:  # noqa: BLE001 - shutting down anyway
        log.warning("broker.close.timed_out")
