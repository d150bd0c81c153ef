"""Turning contact requests into stored notifications and fallback chains.

Professional `recipients` get their notifications at once; the request's `family` is a chain
(notifier.fallback) that starts with the first contact. The unique keys (request_id, recipient,
channel) and request_id make a redelivered or republished request a no-op: at-least-once in,
exactly-once effect out. A request cancelled before it arrived (notifier.cancellation) is
stored with every row `cancelled`: nothing of it is ever sent. Chains and notifications are
stored through their owners (notifier.chains, notifier.notification_store)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from broker_messages.contact import ContactRequest
from jinja2 import TemplateError
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier import chains, notification_store
from notifier.cancellation import cancelled_note, without_pupils
from notifier.compose import notification_rows
from notifier.metrics import NotifierMetrics
from notifier.models import family_contacts
from notifier.notification_store import Status
from notifier.templates import TemplateLibrary

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, engine: AsyncEngine, clock: Clock, templates: TemplateLibrary,
                 metrics: NotifierMetrics) -> None:
        self._engine = engine
        self._clock = clock
        self._templates = templates
        self._metrics = metrics

    async def accept(self, requests: list[ContactRequest]) -> list[str | None]:
        now = self._clock.now()
        verdicts: list[str | None] = []
        rows: list[dict[str, Any]] = []
        new_chains: list[dict[str, Any]] = []
        contacts: list[dict[str, Any]] = []
        accepted: dict[str, ContactRequest] = {}
        for request in requests:
            try:
                rows.extend(self._rows(request, now))
            except (TemplateError, ValueError) as error:
                verdicts.append(f"cannot render {request.rule}: {type(error).__name__}: {error}")
                continue
            verdicts.append(None)
            accepted[request.request_id] = request
            new_chains.append(chains.new_chain(request, now))
            contacts.extend(_family_contacts(request, now))
        async with self._engine.begin() as conn:
            # The chain rows first: a cancellation writes the same key (see its module).
            await chains.open_chains(conn, new_chains)
            cancelled = await chains.cancelled_among(
                conn, [chain["request_id"] for chain in new_chains])
            if cancelled:
                rows, contacts = await self._narrow_for_tombstones(conn, accepted, cancelled,
                                                                   rows, contacts, now)
                await _fill_tombstones(conn, new_chains, cancelled)
                _cancel_rows(rows, cancelled)
            await _insert_family_contacts(conn, contacts)
            await notification_store.add(conn, rows)
        for row in rows:
            # Counted once: when the request first arrives (a redelivery inserts nothing).
            found = cancelled.get(row["request_id"])
            if found is not None and found.tombstone:
                self._metrics.notifications.labels(row["rule"], row["channel"], "cancelled").inc()
        return verdicts

    async def _narrow_for_tombstones(self, conn: AsyncConnection,
                                     accepted: dict[str, ContactRequest],
                                     cancelled: dict[str, Row[Any]], rows: list[dict[str, Any]],
                                     contacts: list[dict[str, Any]], now: dt.datetime,
                                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A cancellation that came first for some of a request's siblings: the request goes
        ahead for the others, naming only them (it is no longer cancelled)."""
        for request_id, found in list(cancelled.items()):
            request = accepted.get(request_id)
            if request is None or not found.tombstone:
                continue
            narrowed = without_pupils(request, set(found.cancelled_pupils or []))
            if narrowed is None:
                continue
            del cancelled[request_id]
            rows = [r for r in rows if r["request_id"] != request_id] + self._rows(narrowed, now)
            contacts = [c for c in contacts if c["request_id"] != request_id] + (
                _family_contacts(narrowed, now))
            await chains.revive(conn, narrowed, now)
            log.info("notifier.request.arrived_narrowed request_id=%s", request_id)
        return rows, contacts

    def _rows(self, request: ContactRequest, now: dt.datetime) -> list[dict[str, Any]]:
        rows = []
        for recipient in request.recipients:
            rows.extend(notification_rows(self._templates, request, recipient,
                                          kind="recipient", now=now))
        if request.family:
            rows.extend(notification_rows(self._templates, request, request.family[0],
                                          kind="family", family_index=0, now=now))
        return rows


async def intake_contacts(conn: AsyncConnection, request: ContactRequest,
                          now: dt.datetime) -> None:
    """A follow-on chain's numbers (notifier.fallback), so a reply to it finds its child."""
    await _insert_family_contacts(conn, _family_contacts(request, now))


def _family_contacts(request: ContactRequest, now: dt.datetime) -> list[dict[str, Any]]:
    return [
        {"request_id": request.request_id, "school_urn": request.school.urn,
         "contact_ref": contact.ref, "phone": contact.phone,
         "pupil_ids": [p.pupil_id for p in request.pupils],
         "episode_start": request.episode_start or request.date, "created_at": now}
        for contact in request.family if contact.phone
    ]


def _cancel_rows(rows: list[dict[str, Any]], cancelled: dict[str, Row[Any]]) -> None:
    for row in rows:
        if (found := cancelled.get(row["request_id"])) is not None:
            row.update(status=Status.CANCELLED, note=cancelled_note(found.cancel_reason or ""))


async def _fill_tombstones(conn: AsyncConnection, new_chains: list[dict[str, Any]],
                           cancelled: dict[str, Row[Any]]) -> None:
    for chain in new_chains:
        found = cancelled.get(chain["request_id"])
        if found is not None and found.tombstone:
            await chains.fill_tombstone(conn, chain)
            log.info("notifier.request.arrived_cancelled request_id=%s", chain["request_id"])


async def _insert_family_contacts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(dialect_insert(conn.engine)(family_contacts).on_conflict_do_nothing(),
                           rows)
