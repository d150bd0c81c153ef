"""Transactional outbox: a decision and the message announcing it commit together; a relay
publishes committed rows with confirms and deletes them. A crash between commit and publish
delays a message, never loses it; a crash between publish and delete publishes it twice, which
the consumer's idempotency key absorbs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractExchange
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servicekit.broker import persistent_message
from servicekit.database import UtcDateTime, supports_skip_locked

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData, name: str = "outbox") -> Table:
    """`name` lets two services that share a database each keep their own outbox."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("message_id", String(200), nullable=False),
        Column("routing_key", String(100), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
    )


async def enqueue(
    conn: AsyncConnection,
    table: Table,
    *,
    message_id: str,
    routing_key: str,
    body: bytes,
    now: dt.datetime,
) -> None:
    """Add a message to the outbox in the caller's transaction."""
    await conn.execute(
        table.insert().values(
            message_id=message_id, routing_key=routing_key, body=body, created_at=now
        )
    )


class OutboxRelay:
    """Publishes outbox rows in id order. Call `wake()` after committing new rows.
    `on_published` hears the routing key of each message once the broker has confirmed it;
    `sign` gives the headers that sign a body, added as it is published (so rows committed
    before a key rotation go out under the new key)."""

    def __init__(
        self, engine: AsyncEngine, table: Table, exchange: AbstractExchange, batch_size: int = 200,
        on_published: Callable[[str], None] | None = None,
        sign: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        self._engine = engine
        self._sign = sign
        self._on_published = on_published
        self._table = table
        self._exchange = exchange
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        # One publisher at a time in this process (the loop and an explicit flush); across
        # replicas, SKIP LOCKED on PostgreSQL keeps them apart.
        self._publishing = asyncio.Lock()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish everything committed so far; returns how many were published."""
        total = 0
        async with self._publishing:
            while True:
                count = await self._publish_batch()
                total += count
                if count < self._batch_size:
                    return total

    async def _publish_batch(self) -> int:
        query = select(self._table).order_by(self._table.c.id).limit(self._batch_size)
        if supports_skip_locked(self._engine):
            query = query.with_for_update(skip_locked=True)
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            await asyncio.gather(
                *(
                    self._exchange.publish(
                        persistent_message(
                            row.body, message_id=row.message_id,
                            headers=self._sign(row.body) if self._sign is not None else None,
                        ),
                        routing_key=row.routing_key,
                    )
                    for row in rows
                )
            )
            await conn.execute(
                delete(self._table).where(self._table.c.id.in_([row.id for row in rows]))
            )
        self.published += len(rows)
        if self._on_published is not None:
            for row in rows:
                self._on_published(row.routing_key)
        return len(rows)

    async def run(self, poll_seconds: float = 1.0) -> None:
        while True:
            self._wake.clear()
            try:
                await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox.publish.failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
