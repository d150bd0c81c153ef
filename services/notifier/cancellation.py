"""docs/rules.md "Amendments": triage cancels a contact request whose decision no longer holds
(`ContactCancelled`: a mark re-coded after the request was handed over).

Everything of the request not yet sent is cancelled in one transaction: pending rows (held for
quiet hours, a fallback contact, professionals) become `cancelled`, the chain stops for good
(state `cancelled`: no fallback, no unreachable alert), and rows already claimed by a
dispatcher get `cancel_requested`, which the dispatcher's guard checks immediately before each
provider call (notifier.dispatch). A cancellation that arrives before its request leaves a
`cancelled` chain row behind (a tombstone), so the request's rows are stored cancelled.

The chain row is written first, by both this and the intake: on PostgreSQL the two then queue
on its key, so a request and its cancellation arriving at once on two replicas cannot both
miss each other."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from broker_messages.contact import ContactCancelled
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy import Row, false, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.metrics import NotifierMetrics
from notifier.models import contact_requests, notifications

log = logging.getLogger(__name__)

# Prefixed to the note of a row whose provider call had already started when the cancellation
# was recorded: it settles as the provider says, and staff can see why it went anyway.
SENT_ANYWAY = "cancellation arrived while this message was being sent; "


def cancelled_note(reason: str) -> str:
    return f"cancelled: {reason}"


class Cancellations:
    def __init__(self, engine: AsyncEngine, clock: Clock, metrics: NotifierMetrics) -> None:
        self._engine = engine
        self._clock = clock
        self._metrics = metrics

    async def apply(self, cancels: list[ContactCancelled]) -> list[str | None]:
        """Record a batch of cancellations; a repeated one changes nothing. Every one is
        accepted (None): a cancellation of a request never seen is kept for when it comes."""
        now = self._clock.now()
        unique = {cancel.request_id: cancel for cancel in reversed(cancels)}  # first one wins
        settled: list[Row[Any]] = []
        async with self._engine.begin() as conn:
            for cancel in unique.values():
                settled.extend(await _record(conn, cancel, now))
        for row in settled:
            self._metrics.notifications.labels(row.rule, row.channel, "cancelled").inc()
        return [None] * len(cancels)


async def _record(conn: AsyncConnection, cancel: ContactCancelled,
                  now: dt.datetime) -> list[Row[Any]]:
    """One cancellation, in the caller's transaction; returns the pending rows it cancelled."""
    note = cancelled_note(cancel.reason)
    await _stop_chain(conn, cancel, now)
    pending = (await conn.execute(
        update(notifications)
        .where(notifications.c.request_id == cancel.request_id,
               notifications.c.status == "pending")
        .values(status="cancelled", note=note, updated_at=now)
        .returning(notifications.c.rule, notifications.c.channel)
    )).all()
    # Claimed rows are the dispatcher's to settle: its guard sees the flag before any send.
    claimed = await conn.execute(
        update(notifications)
        .where(notifications.c.request_id == cancel.request_id,
               notifications.c.status == "sending",
               notifications.c.cancel_requested == false())
        .values(cancel_requested=True, note=note, updated_at=now)
    )
    log.info("notifier.request.cancelled request_id=%s pending=%d claimed=%d",
             cancel.request_id, len(pending), claimed.rowcount)
    return list(pending)


async def _stop_chain(conn: AsyncConnection, cancel: ContactCancelled, now: dt.datetime) -> None:
    """The chain becomes `cancelled` whatever its state; with no request yet, a tombstone."""
    insert = dialect_insert(conn.engine)(contact_requests).values(
        request_id=cancel.request_id, school_urn=cancel.school_urn, rule="", payload="",
        state="cancelled", position=0, check_at=None, created_at=now, updated_at=now,
        cancel_reason=cancel.reason)
    await conn.execute(insert.on_conflict_do_update(
        index_elements=[contact_requests.c.request_id],
        set_={"state": "cancelled", "check_at": None, "cancel_reason": cancel.reason,
              "updated_at": now},
        where=contact_requests.c.state != "cancelled",
    ))


async def cancelled_among(conn: AsyncConnection, request_ids: list[str]) -> dict[str, Row[Any]]:
    """Which of these requests are cancelled (with the reason and whether the chain row is a
    tombstone still waiting for its request)."""
    if not request_ids:
        return {}
    rows = await conn.execute(
        select(contact_requests.c.request_id, contact_requests.c.cancel_reason,
               (contact_requests.c.payload == "").label("tombstone"))
        .where(contact_requests.c.request_id.in_(request_ids),
               contact_requests.c.state == "cancelled"))
    return {row.request_id: row for row in rows}
