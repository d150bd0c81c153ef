"""Publishing with confirms, and dead-lettering with a reason."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage
from broker_messages.topology import REJECTION_REASON_HEADER

log = logging.getLogger(__name__)


async def connect(url: str, reconnect_interval: float = 1.0) -> AbstractRobustConnection:
    # A robust connection reconnects and re-declares what was declared on it (exchanges,
    # queues, bindings, consumers); publishes that fail meanwhile raise and are retried by
    # their caller (the outbox relay).
    return await aio_pika.connect_robust(
        url, reconnect_interval=reconnect_interval,
        client_properties={"connection_name": "absence"},
    )


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
