"""docs/rules.md "Replies": an inbound SMS is attributed to the schools that texted (or called)
that number about a request still open, most recent first, and to the children and episodes
those messages were about. It is stored, shown to staff and announced to triage
(`ReplyReceived`, through the transactional outbox), and it stops those requests' fallback
chains: the family has been heard. A school that never texted the number (it is only a later
contact in its chain) is not affected. A reply nobody's message explains is stored and flagged,
never dropped; when it is an ordinary message from a number in E.164 form it is also passed to
triage (`InboundUnmatched`), which owns the rosters and may find the family a parent who
texted first (docs/rules.md "Parents who tell the school first"). STOP/START keywords change the opt-out list instead (notifier.optout).

Each MessageSid is taken once (`inbound_messages`): a replayed webhook changes nothing, even if
a school has texted the number since. Bodies and phone numbers are stored, never logged."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from broker_messages.contact import FamilyOptedOut, InboundUnmatched, ReplyReceived
from broker_messages.topology import (
    FAMILY_OPTED_OUT_ROUTING_KEY,
    INBOUND_UNMATCHED_ROUTING_KEY,
    REPLY_ROUTING_KEY,
)
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier import chains, notification_store, optout
from notifier.cancellation import cancelled_note
from notifier.chains import ChainState
from notifier.models import (
    contact_requests,
    family_contacts,
    inbound_messages,
    notifications,
    outbox,
    replies,
)
from notifier.notification_store import Status

# A message that reached (or is reaching) the number: what a reply can be an answer to.
_ANSWERABLE = (Status.SENDING, Status.SENT, Status.WRITTEN, Status.DELIVERED)

log = logging.getLogger(__name__)

# Only a number triage could find on a roster (docs/contract.md §3: contacts are E.164).
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class _SchoolMatch:
    # The contact the school texted most recently at this number.
    contact_ref: str | None = None
    pupil_ids: set[str] = field(default_factory=set)
    episodes: set[tuple[str, str]] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)


class ReplyDesk:
    def __init__(self, engine: AsyncEngine, clock: Clock, match_window: dt.timedelta,
                 on_published: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._clock = clock
        self._match_window = match_window
        self._on_published = on_published

    async def receive(self, message_sid: str, from_phone: str, body: str) -> list[str]:
        """Store one inbound SMS (idempotent on the MessageSid); returns the stored reply ids,
        the school texted most recently first."""
        now = self._clock.now()
        stored: list[str] = []
        stopped: list[str] = []
        announced = False
        async with self._engine.begin() as conn:
            if not await _first_time(conn, message_sid, now):
                log.info("notifier.reply.replayed message_sid=%s", message_sid)
                return []
            matches = await self._match(conn, from_phone, now)
            kind = optout.keyword(body)
            if (kind == "opt_in"
                    and body.strip().strip(".!").upper() == optout.CONDITIONAL_OPT_IN
                    and not await _opted_out_anywhere(conn, from_phone, list(matches))):
                kind = None
            targets: dict[str | None, _SchoolMatch] = dict(matches) or {None: _SchoolMatch()}
            for school_urn, match in targets.items():
                reply_id = f"{message_sid}:{school_urn or 'unmatched'}"[:120]
                await conn.execute(
                    replies.insert().values(
                        id=reply_id, message_sid=message_sid, school_urn=school_urn,
                        from_phone=from_phone, body=body, kind=kind or "reply",
                        matched=school_urn is not None,
                        contact_ref=match.contact_ref,
                        pupil_ids=sorted(match.pupil_ids),
                        episodes=[{"pupil_id": p, "episode_start": d}
                                  for p, d in sorted(match.episodes)],
                        received_at=now,
                    )
                )
                stored.append(reply_id)
                if kind == "opt_out":
                    stop_at = school_urn or optout.ANY_SCHOOL
                    if await optout.opt_out(conn, stop_at, from_phone, "stop-keyword", now):
                        stopped.append(stop_at)
                elif kind == "opt_in":
                    await optout.opt_in(conn, [school_urn] if school_urn else [], from_phone)
                elif school_urn is not None:
                    await self._announce(conn, reply_id, school_urn, match, now)
                    announced = True
                elif _E164.match(from_phone):
                    await _pass_on_unmatched(conn, reply_id, from_phone, body, now)
                    announced = True
                log.info("notifier.reply.stored reply_id=%s kind=%s matched=%s", reply_id,
                         kind or "reply", school_urn is not None)
            if stopped and _E164.match(from_phone):
                await _pass_on_opt_out(conn, message_sid, from_phone, stopped, now)
                announced = True
        if announced:
            self._on_published()
        return stored

    async def _match(self, conn: AsyncConnection, phone: str,
                     now: dt.datetime) -> dict[str | None, _SchoolMatch]:
        """The schools whose family messages went to this number within the match window,
        about requests not cancelled; the school texted most recently first."""
        texted_at = func.coalesce(notifications.c.sent_at, notifications.c.created_at)
        rows = await conn.execute(
            select(notifications.c.school_urn, notifications.c.request_id,
                   notifications.c.recipient_ref, notifications.c.pupil_ids,
                   family_contacts.c.episode_start)
            .join(contact_requests,
                  contact_requests.c.request_id == notifications.c.request_id)
            .outerjoin(family_contacts,
                       and_(family_contacts.c.request_id == notifications.c.request_id,
                            family_contacts.c.contact_ref == notifications.c.recipient_ref))
            .where(notifications.c.to == phone, notifications.c.kind == "family",
                   notifications.c.channel.in_(("sms", "voice")),
                   notifications.c.status.in_(_ANSWERABLE),
                   contact_requests.c.state != ChainState.CANCELLED,
                   texted_at >= now - self._match_window)
            .order_by(texted_at.desc(), notifications.c.id)
        )
        matches: dict[str | None, _SchoolMatch] = {}
        for row in rows:
            match = matches.setdefault(row.school_urn, _SchoolMatch(contact_ref=row.recipient_ref))
            match.pupil_ids.update(row.pupil_ids)
            match.request_ids.add(row.request_id)
            start = row.episode_start.isoformat() if row.episode_start else ""
            match.episodes.update((pupil_id, start) for pupil_id in row.pupil_ids)
        return matches

    async def _announce(self, conn: AsyncConnection, reply_id: str, school_urn: str,
                        match: _SchoolMatch, now: dt.datetime) -> None:
        """Tell triage, and stop chasing this family: no further fallback, nothing held."""
        assert match.contact_ref is not None  # a matched school texted a contact
        event = ReplyReceived(reply_id=reply_id, school_urn=school_urn,
                              pupil_ids=tuple(sorted(match.pupil_ids)),
                              contact_ref=match.contact_ref, received_at=now)
        await conn.execute(outbox.insert().values(
            message_id=reply_id, routing_key=REPLY_ROUTING_KEY,
            body=event.model_dump_json(by_alias=True).encode(), created_at=now))
        requests = await chains.with_follow_ons(conn, sorted(match.request_ids))
        await chains.stop_for_reply(conn, requests, now)
        await notification_store.cancel_pending(
            conn, requests, cancelled_note("the family replied"), now, family_only=True,
            error="the family replied")


async def _pass_on_unmatched(conn: AsyncConnection, reply_id: str, phone: str, body: str,
                             now: dt.datetime) -> None:
    """Triage looks the number up on its rosters: a parent may be telling the school first."""
    event = InboundUnmatched(message_id=reply_id, from_phone=phone, body=body[:1600],
                             received_at=now)
    await conn.execute(outbox.insert().values(
        message_id=reply_id, routing_key=INBOUND_UNMATCHED_ROUTING_KEY,
        body=event.model_dump_json(by_alias=True).encode(), created_at=now))


async def _pass_on_opt_out(conn: AsyncConnection, message_sid: str, phone: str,
                           stopped_at: list[str], now: dt.datetime) -> None:
    """docs/rules.md "family_opted_out": triage tells each school's officer, once."""
    every_school = optout.ANY_SCHOOL in stopped_at
    event = FamilyOptedOut(message_id=message_sid[:100], from_phone=phone,
                           school_urns=() if every_school else tuple(sorted(stopped_at)),
                           received_at=now)
    await conn.execute(outbox.insert().values(
        message_id=f"opted-out:{message_sid}"[:200], routing_key=FAMILY_OPTED_OUT_ROUTING_KEY,
        body=event.model_dump_json(by_alias=True).encode(), created_at=now))


async def _first_time(conn: AsyncConnection, message_sid: str, now: dt.datetime) -> bool:
    """Take the MessageSid; False when it was taken before (a replayed webhook). On PostgreSQL
    a concurrent copy waits for this transaction and then finds it taken."""
    taken = await conn.execute(
        dialect_insert(conn.engine)(inbound_messages)
        .values(message_sid=message_sid, received_at=now).on_conflict_do_nothing())
    return bool(taken.rowcount)


async def _opted_out_anywhere(conn: AsyncConnection, phone: str,
                              school_urns: list[str | None]) -> bool:
    for school_urn in {*school_urns, optout.ANY_SCHOOL}:
        if await optout.is_opted_out(conn, school_urn or optout.ANY_SCHOOL, phone):
            return True
    return False
