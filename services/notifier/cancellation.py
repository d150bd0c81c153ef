"""docs/rules.md "Amendments": triage cancels a contact request whose decision no longer holds
(`ContactCancelled`: a mark re-coded after the request was handed over).

Everything of the request not yet sent is cancelled in one transaction: pending rows (held for
quiet hours, a fallback contact, professionals) become `cancelled`, the chain stops for good
(state `cancelled`: no fallback, no unreachable alert), and rows already claimed by a
dispatcher get `cancel_requested`, which the dispatcher's guard checks immediately before each
provider call (notifier.dispatch). A cancellation that arrives before its request leaves a
`cancelled` chain row behind (a tombstone), so the request's rows are stored cancelled.

A request naming several siblings is cancelled only for the pupils the cancellation names:
while another child's absence is still unexplained, the family's message is rewritten to name
only that child (docs/rules.md "Siblings": each decision is still the pupil's own).

The chain row is written first, by both this and the intake: on PostgreSQL the two then queue
on its key, so a request and its cancellation arriving at once on two replicas cannot both
miss each other."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from broker_messages.contact import ContactCancelled, ContactRequest, Recipient
from servicekit.clock import Clock
from servicekit.database import dialect_insert, supports_skip_locked
from sqlalchemy import Row, false, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.compose import notification_rows
from notifier.metrics import NotifierMetrics
from notifier.models import contact_requests, family_contacts, notifications
from notifier.templates import TemplateLibrary

log = logging.getLogger(__name__)

# Prefixed to the note of a row whose provider call had already started when the cancellation
# was recorded: it settles as the provider says, and staff can see why it went anyway.
SENT_ANYWAY = "cancellation arrived while this message was being sent; "


def cancelled_note(reason: str) -> str:
    return f"cancelled: {reason}"


def without_pupils(request: ContactRequest, pupil_ids: set[str]) -> ContactRequest | None:
    """The request naming only the pupils not cancelled; None when none is left (or the
    cancellation names no pupil: the whole request goes)."""
    kept = tuple(p for p in request.pupils if p.pupil_id not in pupil_ids)
    if not pupil_ids or not kept:
        return None
    return request.model_copy(update={"pupils": kept})


class Cancellations:
    def __init__(self, engine: AsyncEngine, clock: Clock, metrics: NotifierMetrics,
                 templates: TemplateLibrary) -> None:
        self._engine = engine
        self._clock = clock
        self._metrics = metrics
        self._templates = templates

    async def apply(self, cancels: list[ContactCancelled]) -> list[str | None]:
        """Record a batch of cancellations; a repeated one changes nothing. Every one is
        accepted (None): a cancellation of a request never seen is kept for when it comes."""
        now = self._clock.now()
        settled: list[Row[Any]] = []
        async with self._engine.begin() as conn:
            for cancel in cancels:
                settled.extend(await self._record(conn, cancel, now))
        for row in settled:
            self._metrics.notifications.labels(row.rule, row.channel, "cancelled").inc()
        return [None] * len(cancels)


    async def _record(self, conn: AsyncConnection, cancel: ContactCancelled,
                      now: dt.datetime) -> list[Row[Any]]:
        """One cancellation, in the caller's transaction; returns the pending rows it
        cancelled."""
        query = select(contact_requests).where(
            contact_requests.c.request_id == cancel.request_id)
        if supports_skip_locked(conn.engine):
            query = query.with_for_update()
        chain = (await conn.execute(query)).first()
        if chain is not None and chain.payload and chain.state != "cancelled":
            request = ContactRequest.model_validate_json(chain.payload)
            narrowed = without_pupils(request, set(cancel.pupil_ids))
            if narrowed is not None:
                await self._narrow(conn, narrowed, cancel, now)
                return []
        cancelled_pupils = sorted({*(chain.cancelled_pupils or [] if chain else []),
                                   *cancel.pupil_ids})
        return await _cancel_all(conn, cancel, cancelled_pupils, now)

    async def _narrow(self, conn: AsyncConnection, narrowed: ContactRequest,
                      cancel: ContactCancelled, now: dt.datetime) -> None:
        """Take the cancelled pupils out of a shared message that has not gone yet."""
        request_id = narrowed.request_id
        pupil_ids = [p.pupil_id for p in narrowed.pupils]
        await conn.execute(
            update(contact_requests).where(contact_requests.c.request_id == request_id)
            .values(payload=narrowed.model_dump_json(by_alias=True), updated_at=now))
        await conn.execute(
            update(family_contacts).where(family_contacts.c.request_id == request_id)
            .values(pupil_ids=pupil_ids))
        pending = (await conn.execute(
            select(notifications.c.id, notifications.c.kind, notifications.c.family_index,
                   notifications.c.recipient_ref, notifications.c.channel)
            .where(notifications.c.request_id == request_id,
                   notifications.c.status == "pending"))).all()
        note = (f"rewritten without {len(cancel.pupil_ids)} pupil(s): "
                f"{cancelled_note(cancel.reason)}")
        for row in pending:
            recipient = _recipient_of(narrowed, row)
            if recipient is None:
                continue
            [rendered] = [r for r in notification_rows(
                self._templates, narrowed, recipient, kind=row.kind, now=now,
                family_index=row.family_index) if r["channel"] == row.channel]
            await conn.execute(
                update(notifications).where(notifications.c.id == row.id,
                                            notifications.c.status == "pending")
                .values(body=rendered["body"], subject=rendered["subject"],
                        html=rendered["html"], pupil_ids=pupil_ids, note=note,
                        updated_at=now))
        log.info("notifier.request.narrowed request_id=%s rewritten=%d", request_id,
                 len(pending))


def _recipient_of(request: ContactRequest, row: Row[Any]) -> Recipient | None:
    if row.kind == "family":
        return request.family[row.family_index]
    candidates = request.unreachable if row.kind == "unreachable" else request.recipients
    ref = row.recipient_ref.removeprefix("unreachable:")
    return next((r for r in candidates if r.ref == ref), None)


async def _cancel_all(conn: AsyncConnection, cancel: ContactCancelled,
                      cancelled_pupils: list[str], now: dt.datetime) -> list[Row[Any]]:
    note = cancelled_note(cancel.reason)
    await _stop_chain(conn, cancel, cancelled_pupils, now)
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


async def _stop_chain(conn: AsyncConnection, cancel: ContactCancelled,
                      cancelled_pupils: list[str], now: dt.datetime) -> None:
    """The chain becomes `cancelled` whatever its state; with no request yet, a tombstone that
    remembers which pupils were cancelled."""
    insert = dialect_insert(conn.engine)(contact_requests).values(
        request_id=cancel.request_id, school_urn=cancel.school_urn, rule="", payload="",
        state="cancelled", position=0, check_at=None, created_at=now, updated_at=now,
        cancel_reason=cancel.reason, cancelled_pupils=cancelled_pupils)
    await conn.execute(insert.on_conflict_do_update(
        index_elements=[contact_requests.c.request_id],
        set_={"state": "cancelled", "check_at": None, "cancel_reason": cancel.reason,
              "cancelled_pupils": cancelled_pupils, "updated_at": now},
    ))


async def cancelled_among(conn: AsyncConnection, request_ids: list[str]) -> dict[str, Row[Any]]:
    """Which of these requests are cancelled (with the reason and whether the chain row is a
    tombstone still waiting for its request)."""
    if not request_ids:
        return {}
    rows = await conn.execute(
        select(contact_requests.c.request_id, contact_requests.c.cancel_reason,
               contact_requests.c.cancelled_pupils,
               (contact_requests.c.payload == "").label("tombstone"))
        .where(contact_requests.c.request_id.in_(request_ids),
               contact_requests.c.state == "cancelled"))
    return {row.request_id: row for row in rows}
