"""Sending stored notifications, with the service's one retry layer.

Rows are claimed (`sending`) in a short transaction, sent, then settled, so two replicas never
send the same row and a crash mid-send leaves a claim that is retried after it expires. Held
(quiet hours) and fallback rows are ordinary rows with a later `due_at`: the same claim covers
them. The rows themselves are written by notifier.notification_store.

The dispatcher is the one place that moves fallback chains on (notifier.fallback): every due
chain at the start of each pass, and a family row's chain as soon as that row settles: in the
settling transaction for its send here, and just after a status callback (notifier.webhooks
asks `family_rows_settled`). The settling transaction marks the chain for a look first, so a
crash, or a chain that cannot be moved, only delays it.

A claimed row may wait a while for its turn at the rate limit, and its request may be cancelled
meanwhile (notifier.cancellation). So once it has its slot, and before each provider call,
retries included, one conditional UPDATE marks the send as started; it fails once a
cancellation is recorded (or the claim has passed to another process), and then nothing is
sent. The call then waits for its slot, a fraction of a second at most (notifier.rate_limit).

Guards, settlements and the chains they move on are group-committed (notifier.group_commit):
with many sends in flight, those arriving while a transaction is under way share the next one.
A provider call still starts only after its own guard has committed.

`concurrency` sends are in flight at once: a provider answering in 200-300 ms (Twilio) is
reached at 100 a second only by sending concurrently. The twilio client's HTTP session keeps
aiohttp's default pool of 100 connections, above the setting's default."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from servicekit.clock import Clock
from sqlalchemy import Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from notifier import notification_store, optout
from notifier.email_replies import reply_address
from notifier.fallback import FamilyChase
from notifier.group_commit import GroupCommit
from notifier.metrics import NotifierMetrics
from notifier.notification_store import Settlement, Status
from notifier.providers import OutgoingMessage, Provider, ProviderError, ProviderResult
from notifier.rate_limit import Limiter

log = logging.getLogger(__name__)


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


async def _wait_for_slot(limit: Limiter, slot: float) -> None:
    """Until the reserved slot, or a later one when the guard outlasted it (it is lost)."""
    while not await limit.wait_for(slot):
        slot = await limit.reserve(first=True)


class _SendRefused(Exception):
    """The guard refused a provider call: not retryable, so tenacity stops at once."""


@dataclass(frozen=True)
class Delivery:
    """How one claimed row's sending ended."""

    attempts: int = 0
    result: ProviderResult | None = None
    error: ProviderError | None = None
    # A provider call was allowed to start (the guard passed at least once).
    started: bool = False
    # The guard refused a provider call: cancelled, or the claim is no longer ours.
    refused: bool = False


class Dispatcher:
    def __init__(self, engine: AsyncEngine, clock: Clock, providers: dict[str, Provider],
                 metrics: NotifierMetrics, *, attempts: int, initial_wait: float,
                 chase: FamilyChase, max_wait: float = 30.0,
                 claim_expiry: dt.timedelta = dt.timedelta(minutes=10), rate_limits: dict[str, Limiter] | None = None,
                 concurrency: int = 64,
                 reply_domain: str | None = None) -> None:
        """`reply_domain`: NOTIFIER_REPLY_DOMAIN, where family emails' replies are received."""
        self._engine = engine
        self._reply_domain = reply_domain
        self._clock = clock
        self._providers = providers
        self._metrics = metrics
        self._attempts = attempts
        self._initial_wait = initial_wait
        self._max_wait = max_wait
        self._claim_expiry = claim_expiry
        self._chase = chase
        # Per sender (channel): every request to the provider, retries included, takes a token.
        self.rate_limits = rate_limits or {}
        # Rows in hand: those being sent, and as many again waiting for their turn or being
        # settled and their chains moved on (group commits, whose waits count as much as the
        # provider's). More are claimed when half have settled (`dispatch_due`).
        self._batch_size = 4 * concurrency
        # Provider calls in flight; a row's other waits (its slot, its guard's group) are
        # outside it, so the groups can be as large as the rows in hand.
        self._slots = asyncio.Semaphore(concurrency)
        self._guards = GroupCommit(self._start_sends)
        self._settlements = GroupCommit(self._settle_group)
        self._wake = asyncio.Event()
        # Rows this process has claimed and not yet settled.
        self._holding: set[Any] = set()
        # Notifications settled (sent, failed or suppressed) so far, for operators and tests.
        self.settled = 0
        self._progress = asyncio.Condition()

    async def wait_settled(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._progress:
                await self._progress.wait_for(lambda: self.settled >= count)

    def wake(self) -> None:
        self._wake.set()

    async def family_rows_settled(self, request_ids: list[str]) -> None:
        """Family rows of these requests settled: move their chains on now, and send what that
        creates. A failure leaves the chain marked, for the next pass."""
        for request_id in dict.fromkeys(request_ids):
            try:
                if await self._chase.advance(request_id):
                    self.wake()
            except Exception:
                log.exception("notifier.family.advance_failed request_id=%s", request_id)

    async def dispatch_due(self) -> int:
        """Move due fallback chains on, then send everything due now; returns how many
        notifications were settled.

        Up to `batch_size` rows are in hand at once, and more are claimed as soon as half
        have settled, while the rest still wait for their turn at the rate limit: claiming
        only once a whole batch had settled left the provider's slots unused for the length
        of a claim at every batch (3-5% of the limit over two seconds at 100/s)."""
        await self._chase.run_due()
        in_hand: set[asyncio.Task[None]] = set()
        try:
            return await self._send_due(in_hand)
        except asyncio.CancelledError:
            for task in in_hand:  # as `gather` did: stopping the service stops its sends
                task.cancel()
            raise

    async def _send_due(self, in_hand: set[asyncio.Task[None]]) -> int:
        """Claim and send until nothing is due; `in_hand` holds the sends not yet settled."""
        total = 0
        failure: BaseException | None = None
        more = True
        while True:
            if self._wake.is_set():  # new rows stored (or a chain moved on) since the last claim
                self._wake.clear()
                more = True
            if more and failure is None and len(in_hand) <= self._batch_size // 2:
                claimed = await self._claim(self._batch_size - len(in_hand))
                more = bool(claimed)
                if claimed:
                    async with self._engine.connect() as conn:
                        stopped = await optout.opted_out_among(
                            conn, {(row.school_urn, row.to) for row in claimed
                                   if row.channel == "sms"})
                    in_hand.update(asyncio.ensure_future(self._send(
                        row, opted_out=(row.school_urn, row.to) in stopped
                        and row.channel == "sms")) for row in claimed)
                    continue
            if not in_hand:
                if failure is not None:
                    raise failure
                return total
            done, _ = await asyncio.wait(in_hand, return_when=asyncio.FIRST_COMPLETED)
            in_hand -= done
            total += len(done)
            for task in done:
                # Every task's exception is taken (asyncio logs those never retrieved); the
                # first stops the claiming, and the rest settle.
                if (error := task.exception()) is not None and failure is None:
                    failure = error

    async def _claim(self, limit: int) -> list[Row[Any]]:
        # A claim this old belongs to a process that died mid-send: the message may or may not
        # have gone, so it is checked with the provider before any resend. Never one of this
        # process's own: rows in hand may wait their turn at the rate limit while it claims
        # more (and a test's clock can jump past the expiry).
        async with self._engine.begin() as conn:
            claimed = await notification_store.claim_due(
                conn, self._clock.now(), limit, expiry=self._claim_expiry,
                holding=self._holding)
        self._holding.update(row.id for row in claimed)
        return claimed

    async def _send(self, row: Row[Any], *, opted_out: bool) -> None:
        try:
            await self._send_and_settle(row, opted_out=opted_out)
        finally:
            self._holding.discard(row.id)

    async def _send_and_settle(self, row: Row[Any], *, opted_out: bool) -> None:
        message = OutgoingMessage(notification_id=row.id, channel=row.channel, to=row.to,
                                  body=row.body, subject=row.subject, html=row.html,
                                  language=row.language, sender_name=row.sender_name,
                                  reply_to=self._reply_to(row))
        if opted_out:
            delivery = Delivery(error=ProviderError(
                "number has opted out (STOP)", retryable=False,
                code=optout.UNSUBSCRIBED_CODE))
        elif row.uncertain and (found := await self._already_sent(message)) is not None:
            log.warning("notifier.send.recovered notification_id=%s channel=%s", row.id,
                        row.channel)
            delivery = Delivery(result=found)
        else:
            delivery = await self._deliver(message, row.claimed_at)
        if delivery.refused and not await self._cancelled_under_our_claim(row):
            # Another process took the claim over (it looked abandoned): it settles the row.
            log.warning("notifier.send.claim_lost notification_id=%s", row.id)
            return
        await self._settle(row, delivery)

    async def _deliver(self, message: OutgoingMessage, claimed_at: dt.datetime) -> Delivery:
        provider = self._providers[message.channel]
        limit = self.rate_limits.get(message.channel)
        attempts = 0
        started = False
        last_error: ProviderError | None = None
        unanswered = False  # an earlier attempt may have been accepted without our hearing
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(initial=self._initial_wait, max=self._max_wait,
                                                 jitter=self._initial_wait),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    if unanswered and (found := await self._already_sent(message)) is not None:
                        log.warning("notifier.send.recovered notification_id=%s channel=%s",
                                    message.notification_id, message.channel)
                        return Delivery(attempts, result=found, started=started)
                    slot = None if limit is None else await limit.reserve()
                    if not await self._start_send(message.notification_id, claimed_at):
                        raise _SendRefused
                    if limit is not None and slot is not None:
                        await _wait_for_slot(limit, slot)
                    started = True
                    try:
                        async with self._slots:
                            result = await provider.send(message)
                        return Delivery(attempts, result=result, started=True)
                    except ProviderError as error:
                        # Every failed call, retried or not: a retry that succeeds hides a
                        # provider's trouble from the notifications' statuses.
                        self._metrics.provider_errors.labels(message.channel,
                                                             error.code or "none").inc()
                        unanswered = unanswered or error.ambiguous
                        last_error = error
                        raise
        except _SendRefused:
            log.info("notifier.send.refused notification_id=%s", message.notification_id)
            # The refused attempt made no provider call.
            return Delivery(attempts - 1, error=last_error, started=started, refused=True)
        except ProviderError as failure:
            return Delivery(attempts, error=failure, started=started)
        except (SQLAlchemyError, OSError):
            # The database, not the provider (providers raise only ProviderError): the guard
            # could not be asked, so this attempt sent nothing. Settled as failed, the row
            # would move its family on for a text never tried (a primary lost mid-send);
            # left claimed, it is sent again once the claim expires, looked up first.
            raise
        except Exception as failure:
            log.exception("notifier.send.crashed notification_id=%s", message.notification_id)
            self._metrics.provider_errors.labels(message.channel, type(failure).__name__).inc()
            return Delivery(attempts, error=ProviderError(type(failure).__name__,
                                                          retryable=False), started=started)
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _reply_to(self, row: Row[Any]) -> str | None:
        """A family email's reply address: one per message, so the inbound-email webhook knows
        which family, pupils and episode a reply answers (notifier.email_replies)."""
        if row.channel != "email" or row.kind != "family" or not self._reply_domain:
            return None
        return reply_address(row.id, self._reply_domain)

    async def _start_send(self, notification_id: str, claimed_at: dt.datetime) -> bool:
        """The guard, answered once the group holding it has committed. A cancellation
        recorded after that commit finds the send started and lets it settle as the provider
        says."""
        return await self._guards.submit((notification_id, claimed_at))

    async def _start_sends(self, claims: Sequence[tuple[str, dt.datetime]]) -> list[bool]:
        async with self._engine.begin() as conn:
            marked = await notification_store.start_send(conn, claims, self._clock.now())
        return [notification_id in marked for notification_id, _ in claims]

    async def _cancelled_under_our_claim(self, row: Row[Any]) -> bool:
        """Why the guard refused (rare, so asked only then): a cancellation, or a lost claim."""
        async with self._engine.connect() as conn:
            return await notification_store.cancelled_under_claim(conn, row)

    async def _already_sent(self, message: OutgoingMessage) -> ProviderResult | None:
        try:
            async with self._slots:
                return await self._providers[message.channel].find_sent(message)
        except Exception:  # noqa: BLE001 - cannot tell: sending again is safer than silence
            log.warning("notifier.send.reconcile_failed notification_id=%s",
                        message.notification_id)
            return None

    async def _settle(self, row: Row[Any], delivery: Delivery) -> None:
        settlement = self._outcome(row, delivery)
        await self._settlements.submit((row, settlement))
        self._metrics.notifications.labels(row.rule, row.channel, settlement.status).inc()
        async with self._progress:
            self.settled += 1
            self._progress.notify_all()

    async def _settle_group(self, group: Sequence[tuple[Row[Any], Settlement]]
                            ) -> list[Status | None]:
        """Settle, and move the settled family rows' chains on, in one transaction."""
        async with self._engine.begin() as conn:
            now = self._clock.now()
            statuses = await notification_store.settle(conn, group, now)
            created, announced = await self._chase.advance_settled(
                conn, [row.request_id for (row, _), status in zip(group, statuses, strict=True)
                       if status is not None and row.kind == "family"], now)
        if announced:
            self._chase.published()
        if created:
            self.wake()
        return statuses

    def _outcome(self, row: Row[Any], delivery: Delivery) -> Settlement:
        """The settled row's status and what goes with it."""
        started = not delivery.refused and (delivery.started or delivery.result is not None)
        if delivery.result is not None:
            handed_over = Status(delivery.result.status)
            log.info("notifier.send.%s notification_id=%s channel=%s rule=%s", handed_over,
                     row.id, row.channel, row.rule)
            return Settlement(handed_over, delivery.attempts,
                              provider_id=delivery.result.provider_id, started=started)
        error = delivery.error
        if delivery.refused:
            log.info("notifier.send.cancelled notification_id=%s channel=%s", row.id,
                     row.channel)
            return Settlement(Status.CANCELLED, delivery.attempts,
                              error=f"{error.code or ''} {error}".strip() if error else None)
        assert error is not None
        unsubscribed = error.code == optout.UNSUBSCRIBED_CODE and row.channel == "sms"
        status = Status.SUPPRESSED if unsubscribed else Status.FAILED
        log.warning("notifier.send.%s notification_id=%s channel=%s code=%s", status, row.id,
                    row.channel, error.code)
        return Settlement(status, delivery.attempts, error=f"{error.code or ''} {error}".strip(),
                          started=started)

    async def run(self, poll_seconds: float) -> None:
        while True:
            self._wake.clear()
            try:
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifier.dispatch.failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
