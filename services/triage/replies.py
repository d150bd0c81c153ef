"""What the notifier tells triage. A parent's reply (docs/rules.md "Replies"), from
`ReplyReceived`: attached to the pupils' open episodes, it stops further chasing; it never
changes a register code, only the school classifies absence. A family nobody could reach
(`FamilyUnreachable`, every contact tried): the `family_unreachable` decision and a task."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from broker_messages.contact import FamilyUnreachable, NotifierEvent, ReplyReceived
from pydantic import TypeAdapter
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triage import decisions as decision_store
from triage import tasks
from triage.decisions import Outcome
from triage.models import replies
from triage.rules import RULES, family_unreachable, rule_named

EVENT_ADAPTER: TypeAdapter[ReplyReceived | FamilyUnreachable] = TypeAdapter(NotifierEvent)

log = logging.getLogger(__name__)

# What a reply stops: the chasing of the family, not professional alerts.
STOPPED_BY_A_REPLY = tuple(rule.id for rule in RULES if rule.stopped_by_reply)


class ReplyRecorder:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def apply(self, received: list[ReplyReceived | FamilyUnreachable]
                    ) -> list[str | None]:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            for reply in received:
                if isinstance(reply, FamilyUnreachable):
                    await _family_unreachable(conn, reply, now)
                    continue
                if not reply.pupil_ids:
                    continue
                recorded = await record_reply(
                    conn, reply.school_urn, reply.pupil_ids, reply_id=reply.reply_id,
                    contact_ref=reply.contact_ref, received_at=reply.received_at,
                    reason="a parent replied: stop chasing this episode", now=now)
                if recorded is not None:
                    log.info("triage.reply.recorded reply_id=%s pupils=%d", reply.reply_id,
                             len(recorded[0]))
        return [None] * len(received)


async def record_reply(conn: AsyncConnection, school_urn: str, pupil_ids: Iterable[str], *,
                       reply_id: str, contact_ref: str, received_at: dt.datetime, reason: str,
                       now: dt.datetime) -> tuple[list[str], list[str]] | None:
    """Keep the reply against each pupil and stop chasing them: their pending actions of the
    rules a reply stops are cancelled with `reason`. Also how staff record that they spoke to
    the family (`triage.staff_api`). Returns the pupils it was new for and the keys of the
    actions cancelled, or None when it was not new for any (redelivered)."""
    stored = await conn.execute(
        dialect_insert(conn.engine)(replies).values([
            {"reply_id": reply_id, "pupil_id": pupil_id, "school_urn": school_urn,
             "contact_ref": contact_ref, "received_at": received_at}
            for pupil_id in dict.fromkeys(pupil_ids)
        ]).on_conflict_do_nothing().returning(replies.c.pupil_id)
    )
    fresh = list(stored.scalars())
    if not fresh:
        return None
    cancelled = await decision_store.cancel_pending(
        conn, school_urn, fresh, STOPPED_BY_A_REPLY, reason, now,
        inputs={"reply_id": reply_id, "contact_ref": contact_ref})
    return fresh, cancelled


async def _family_unreachable(conn: AsyncConnection, event: FamilyUnreachable,
                              now: dt.datetime) -> None:
    """The notifier has already alerted the officer (and the social worker); the task and the
    decision are triage's. Once per pupil, day and rule, however often it is delivered."""
    rule = rule_named(event.rule)
    if rule is None or not rule.must_reach_family:
        return
    task, reason = family_unreachable.reported(event.rule, event.contacts_tried, event.date)
    for pupil_id in dict.fromkeys(event.pupil_ids):
        opened = await tasks.open_task(
            conn, kind=task.kind, school_urn=event.school_urn, pupil_id=pupil_id,
            day=task.day, now=now, detail=task.detail)
        if not opened:
            continue  # redelivered, or already raised for this day
        await decision_store.record(
            conn, rule=family_unreachable.ID, school_urn=event.school_urn, pupil_id=pupil_id,
            dedup_key=family_unreachable.dedup_key(event.school_urn, pupil_id, event.date,
                                                   event.rule),
            outcome=Outcome.REQUESTED, reason=reason,
            inputs={"date": event.date.isoformat(), "request_id": event.request_id}, now=now)
        log.info("triage.family.unreachable school_urn=%s pupil_id=%s", event.school_urn,
                 pupil_id)
