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
miss each other. The chain and the notifications are written through their owners
(notifier.chains, notifier.notification_store)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from broker_messages.contact import ContactCancelled, ContactRequest, Recipient, follow_on_id
from servicekit.clock import Clock
from sqlalchemy import Row, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier import chains, notification_store
from notifier.chains import ChainState
from notifier.compose import notification_rows
from notifier.metrics import NotifierMetrics
from notifier.models import family_contacts
from notifier.notification_store import AnyRow
from notifier.templates import TemplateLibrary

log = logging.getLogger(__name__)


def cancelled_note(reason: str) -> str:
    return f"cancelled: {reason}"


def without_pupils(request: ContactRequest, pupil_ids: set[str]) -> ContactRequest | None:
    """The request naming only the pupils not cancelled; None when none is left (or the
    cancellation names no pupil: the whole request goes)."""
    kept = tuple(p for p in request.pupils if p.pupil_id not in pupil_ids)
    if not pupil_ids or not kept:
        return None
    return request.model_copy(update={
        "pupils": kept,
        "follow_on": tuple(f for f in request.follow_on if f.pupil_id not in pupil_ids)})


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
        chain = await chains.locked(conn, cancel.request_id)
        settled = await _cancel_follow_ons(conn, cancel, chain, now)
        if chain is not None and chain.payload and chain.state != ChainState.CANCELLED:
            request = ContactRequest.model_validate_json(chain.payload)
            narrowed = without_pupils(request, set(cancel.pupil_ids))
            if narrowed is not None:
                await self._narrow(conn, narrowed, cancel, now)
                return settled
        cancelled_pupils = sorted({*(chain.cancelled_pupils or [] if chain else []),
                                   *cancel.pupil_ids})
        return settled + await _cancel_all(conn, cancel, cancelled_pupils, now)

    async def _narrow(self, conn: AsyncConnection, narrowed: ContactRequest,
                      cancel: ContactCancelled, now: dt.datetime) -> None:
        """Take the cancelled pupils out of a shared message that has not gone yet."""
        request_id = narrowed.request_id
        pupil_ids = [p.pupil_id for p in narrowed.pupils]
        await chains.replace_request(conn, narrowed, now)
        await conn.execute(
            update(family_contacts).where(family_contacts.c.request_id == request_id)
            .values(pupil_ids=pupil_ids))
        pending = await notification_store.pending_of(conn, request_id)
        note = (f"rewritten without {len(cancel.pupil_ids)} pupil(s): "
                f"{cancelled_note(cancel.reason)}")
        for row in pending:
            recipient = _recipient_of(narrowed, row)
            if recipient is None:
                continue
            [rendered] = [r for r in notification_rows(
                self._templates, narrowed, recipient, kind=row.kind, now=now,
                family_index=row.family_index) if r["channel"] == row.channel]
            await notification_store.rewrite_pending(conn, row.id, rendered, pupil_ids, note,
                                                     now)
        log.info("notifier.request.narrowed request_id=%s rewritten=%d", request_id,
                 len(pending))


def _recipient_of(request: ContactRequest, row: AnyRow) -> Recipient | None:
    if row.kind == "family":
        index: int = row.family_index
        return request.family[index]
    candidates = request.unreachable if row.kind == "unreachable" else request.recipients
    ref = row.recipient_ref.removeprefix("unreachable:")
    return next((r for r in candidates if r.ref == ref), None)


async def _cancel_follow_ons(conn: AsyncConnection, cancel: ContactCancelled,
                            chain: Row[Any] | None, now: dt.datetime) -> list[Row[Any]]:
    """A shared carer was not reached and the cancelled children's own chains already go on
    (docs/rules.md "Siblings"): those are cancelled too. Before the split, narrowing the
    request takes them out of `follow_on` instead."""
    if chain is None or chain.state != ChainState.SPLIT:
        return []
    request = ContactRequest.model_validate_json(chain.payload)
    named = set(cancel.pupil_ids) or {p.pupil_id for p in request.pupils}
    settled: list[Row[Any]] = []
    for follow_on in request.follow_on:
        if follow_on.pupil_id in named:
            child = cancel.model_copy(update={
                "request_id": follow_on_id(cancel.request_id, follow_on.pupil_id),
                "pupil_ids": (follow_on.pupil_id,)})
            settled += await _cancel_all(conn, child, [follow_on.pupil_id], now)
    return settled


async def _cancel_all(conn: AsyncConnection, cancel: ContactCancelled,
                      cancelled_pupils: list[str], now: dt.datetime) -> list[Row[Any]]:
    note = cancelled_note(cancel.reason)
    await chains.cancel(conn, cancel.request_id, cancel.school_urn, cancel.reason,
                        cancelled_pupils, now)
    pending = await notification_store.cancel_pending(conn, [cancel.request_id], note, now)
    claimed = await notification_store.request_cancel_of_claimed(conn, cancel.request_id, note,
                                                                 now)
    log.info("notifier.request.cancelled request_id=%s pending=%d claimed=%d",
             cancel.request_id, len(pending), claimed)
    return pending
