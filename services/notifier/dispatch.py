"""Sending stored notifications, with the service's one retry layer.

Rows are claimed (`sending`) in a short transaction, sent, then settled, so two replicas never
send the same row and a crash mid-send leaves a claim that is retried after it expires."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from servicekit.clock import Clock
from servicekit.database import supports_skip_locked
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from notifier.metrics import NotifierMetrics
from notifier.models import notifications
from notifier.providers import OutgoingMessage, Provider, ProviderError, ProviderResult

log = logging.getLogger(__name__)

CLAIM_EXPIRES = dt.timedelta(minutes=10)


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


class Dispatcher:
    def __init__(self, engine: AsyncEngine, clock: Clock, providers: dict[str, Provider],
                 metrics: NotifierMetrics, *, attempts: int, initial_wait: float,
                 batch_size: int = 100, concurrency: int = 20) -> None:
        self._engine = engine
        self._clock = clock
        self._providers = providers
        self._metrics = metrics
        self._attempts = attempts
        self._initial_wait = initial_wait
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        # Notifications settled (sent or failed) so far, for operators and tests to await.
        self.settled = 0
        self._progress = asyncio.Condition()

    async def wait_settled(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._progress:
                await self._progress.wait_for(lambda: self.settled >= count)

    def wake(self) -> None:
        self._wake.set()

    async def dispatch_due(self) -> int:
        """Send everything due now; returns how many notifications were settled."""
        total = 0
        while True:
            claimed = await self._claim()
            if not claimed:
                return total
            await asyncio.gather(*(self._send(row) for row in claimed))
            total += len(claimed)

    async def _claim(self) -> list[Row]:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            await conn.execute(
                update(notifications)
                .where(notifications.c.status == "sending",
                       notifications.c.claimed_at < now - CLAIM_EXPIRES)
                .values(status="pending")
            )
            query = (
                select(notifications)
                .where(notifications.c.status == "pending", notifications.c.due_at <= now)
                .order_by(notifications.c.due_at, notifications.c.created_at)
                .limit(self._batch_size)
            )
            if supports_skip_locked(self._engine):
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    update(notifications)
                    .where(notifications.c.id.in_([row.id for row in rows]))
                    .values(status="sending", claimed_at=now, updated_at=now)
                )
        return rows

    async def _send(self, row: Row) -> None:
        message = OutgoingMessage(notification_id=row.id, channel=row.channel, to=row.to,
                                  body=row.body, subject=row.subject, html=row.html)
        provider = self._providers[row.channel]
        attempts = 0
        result: ProviderResult | None = None
        error: ProviderError | None = None
        async with self._slots:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self._attempts),
                    wait=wait_exponential_jitter(initial=self._initial_wait, max=30),
                    retry=retry_if_exception(_retryable),
                    reraise=True,
                ):
                    with attempt:
                        attempts += 1
                        result = await provider.send(message)
            except ProviderError as failure:
                error = failure
            except Exception as failure:  # noqa: BLE001 - a bug must not stop the dispatcher
                log.exception("notifier.send.crashed notification_id=%s", row.id)
                error = ProviderError(type(failure).__name__, retryable=False)
        now = self._clock.now()
        if result is not None:
            values = {"status": "sent", "provider_id": result.provider_id, "error": None}
            log.info("notifier.send.sent notification_id=%s channel=%s rule=%s", row.id,
                     row.channel, row.rule)
        else:
            assert error is not None
            values = {"status": "failed", "error": f"{error.code or ''} {error}".strip()}
            self._metrics.provider_errors.labels(row.channel, error.code or "none").inc()
            log.warning("notifier.send.failed notification_id=%s channel=%s code=%s", row.id,
                        row.channel, error.code)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(notifications).where(notifications.c.id == row.id)
                .values(attempts=row.attempts + attempts, updated_at=now, claimed_at=None,
                        **values)
            )
        self._metrics.notifications.labels(row.rule, row.channel, values["status"]).inc()
        async with self._progress:
            self.settled += 1
            self._progress.notify_all()

    async def run(self, poll_seconds: float) -> None:
        while True:
            self._wake.clear()
            try:
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - database away: try again on the next tick
                log.exception("notifier.dispatch.failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
