"""Email replies (docs/rules.md "Replies", docs/contract.md §5): a parent answers a family
email, and the answer is captured like an SMS reply.

Each family email carries its own reply address, `reply+{notification id}@{NOTIFIER_REPLY_DOMAIN}`
(`Reply-To`). Mail to that domain is received by an inbound-parse provider, which posts it to
`POST /inbound/email`, signed with NOTIFIER_INBOUND_EMAIL_SECRET. The address names the message
answered, so the reply is attributed to that request's school, contact, pupils and episode
without trusting the sender's address (which anyone can forge); a per-message address rather
than the school's own inbox keeps the reply in the pupil's record and lets it stop the chase.

Like an SMS reply it is stored (`replies`, `from` being the sender's address), shown to staff,
announced to triage (`ReplyReceived` through the outbox) and ends the family's chase. A reply
that names no message still open is stored unmatched, never dropped. Each Message-ID is taken
once. Addresses and bodies are stored, never logged."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable

from broker_messages.contact import ContactRequest, ReplyReceived
from broker_messages.topology import REPLY_ROUTING_KEY
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier import chains, notification_store
from notifier.cancellation import cancelled_note
from notifier.chains import ChainState
from notifier.models import contact_requests, inbound_messages, notifications, outbox, replies
from notifier.notification_store import AnyRow, Status

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"reply\+([0-9a-f-]{36})@([A-Za-z0-9.-]+)", re.IGNORECASE)
# What a reply can answer: a message handed to the provider (or being handed over).
_ANSWERABLE = (Status.SENDING, Status.SENT, Status.WRITTEN, Status.DELIVERED)


def reply_address(notification_id: str, domain: str) -> str:
    return f"reply+{notification_id}@{domain}"


def answered_notification(to: str, domain: str) -> str | None:
    """The notification id a reply address names, if it is one of this domain's."""
    found = _ADDRESS.fullmatch(to.strip())
    if found is None or found.group(2).lower() != domain.lower():
        return None
    return found.group(1).lower()


class EmailReplyDesk:
    def __init__(self, engine: AsyncEngine, clock: Clock, domain: str | None,
                 on_published: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._clock = clock
        self._domain = domain
        self._on_published = on_published

    async def receive(self, message_id: str, to: str, sender: str, body: str) -> str | None:
        """Store one email reply (idempotent on its Message-ID); returns the reply id, None
        when this Message-ID was received before."""
        now = self._clock.now()
        key = "email:" + hashlib.sha256(message_id.encode()).hexdigest()[:58]
        notification_id = answered_notification(to, self._domain) if self._domain else None
        async with self._engine.begin() as conn:
            taken = await conn.execute(
                dialect_insert(conn.engine)(inbound_messages)
                .values(message_sid=key, received_at=now).on_conflict_do_nothing())
            if not taken.rowcount:
                log.info("notifier.email_reply.replayed key=%s", key)
                return None
            found = (await _answered(conn, notification_id)) if notification_id else None
            school_urn = found.school_urn if found is not None else None
            reply_id = f"{key}:{school_urn or 'unmatched'}"
            pupil_ids = sorted(found.pupil_ids) if found is not None else []
            start = _episode_start(found.payload) if found is not None else ""
            await conn.execute(replies.insert().values(
                id=reply_id, message_sid=key, school_urn=school_urn, from_phone=sender[:254],
                body=body, kind="reply", matched=found is not None,
                contact_ref=found.recipient_ref if found is not None else None,
                pupil_ids=pupil_ids,
                episodes=[{"pupil_id": p, "episode_start": start} for p in pupil_ids],
                received_at=now))
            if found is not None:
                await _announce(conn, reply_id, found, now)
            log.info("notifier.email_reply.stored reply_id=%s matched=%s", reply_id,
                     found is not None)
        if found is not None:
            self._on_published()
        return reply_id


async def _answered(conn: AsyncConnection, notification_id: str) -> AnyRow | None:
    """The family email a reply address names, if its request is still open."""
    return (await conn.execute(
        select(notifications.c.school_urn, notifications.c.request_id,
               notifications.c.recipient_ref, notifications.c.pupil_ids,
               contact_requests.c.payload)
        .join(contact_requests, contact_requests.c.request_id == notifications.c.request_id)
        .where(notifications.c.id == notification_id, notifications.c.kind == "family",
               notifications.c.channel == "email",
               notifications.c.status.in_(_ANSWERABLE),
               contact_requests.c.state != ChainState.CANCELLED))).first()


def _episode_start(payload: str) -> str:
    start = ContactRequest.model_validate_json(payload).episode_start if payload else None
    return start.isoformat() if start else ""


async def _announce(conn: AsyncConnection, reply_id: str, found: AnyRow,
                    now: dt.datetime) -> None:
    """As for an SMS reply (notifier.replies): tell triage, stop chasing this family."""
    event = ReplyReceived(reply_id=reply_id, school_urn=found.school_urn,
                          pupil_ids=tuple(sorted(found.pupil_ids)),
                          contact_ref=found.recipient_ref, received_at=now)
    await conn.execute(outbox.insert().values(
        message_id=reply_id, routing_key=REPLY_ROUTING_KEY,
        body=event.model_dump_json(by_alias=True).encode(), created_at=now))
    await chains.stop_for_reply(conn, [found.request_id], now)
    await notification_store.cancel_pending(
        conn, [found.request_id], cancelled_note("the family replied"), now, family_only=True,
        error="the family replied")
