"""Publishing with confirms, and dead-lettering with a reason."""

from __future__ import annotations

import logging
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from broker_messages.topology import REJECTION_REASON_HEADER

log = logging.getLogger(__name__)


async def connect(url: str) -> AbstractRobustConnection:
    # A robust connection reconnects and re-declares what was declared on it.
    return await aio_pika.connect_robust(url, client_properties={"connection_name": "absence"})


async def confirmed_channel(connection: AbstractRobustConnection) -> AbstractRobustChannel:
    channel = await connection.channel(publisher_confirms=True)
    return channel  # type: ignore[return-value]


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
    dead_exchange: AbstractExchange, message: AbstractIncomingMessage, reason: str
) -> None:
    """Move `message` to the dead-letter queue with `reason`, then ack the original.

    The publish is confirmed before the ack, so a crash in between duplicates a dead letter
    rather than losing an event.
    """
    headers = dict(message.headers or {})
    headers[REJECTION_REASON_HEADER] = reason[:500]
    headers["x-original-routing-key"] = message.routing_key or ""
    await dead_exchange.publish(
        persistent_message(message.body, message_id=message.message_id, headers=headers),
        routing_key=message.routing_key or "",
    )
    await message.ack()


def delivery_count(message: AbstractIncomingMessage) -> int:
    """How many times the broker has delivered this message before (quorum queues count)."""
    value = (message.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0
