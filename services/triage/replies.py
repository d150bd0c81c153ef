"""A parent's reply (rules.md §4 "Replies"), from the notifier's `ReplyReceived`: attached to
the pupils' open episodes, it stops further chasing. It never changes a register code: only
the school classifies absence (seed 003 §4)."""

from __future__ import annotations

import logging

from broker_messages.contact import ReplyReceived
from servicekit.clock import Clock
from servicekit.database import dialect_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from triage import decisions as decision_store
from triage.models import replies
from triage.rules.decisions import DAY3_HOME_VISIT, FIRST_DAY_CONTACT

log = logging.getLogger(__name__)

# What a reply stops: the chasing of the family, not professional alerts.
STOPPED_BY_A_REPLY = (FIRST_DAY_CONTACT, DAY3_HOME_VISIT)


class ReplyRecorder:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def apply(self, received: list[ReplyReceived]) -> list[str | None]:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            for reply in received:
                if not reply.pupil_ids:
                    continue
                stored = await conn.execute(
                    dialect_insert(conn.engine)(replies).values([
                        {"reply_id": reply.reply_id, "pupil_id": pupil_id,
                         "school_urn": reply.school_urn, "contact_ref": reply.contact_ref,
                         "received_at": reply.received_at}
                        for pupil_id in dict.fromkeys(reply.pupil_ids)
                    ]).on_conflict_do_nothing().returning(replies.c.pupil_id)
                )
                fresh = list(stored.scalars())
                if not fresh:
                    continue  # redelivered
                await decision_store.cancel_pending(
                    conn, reply.school_urn, fresh, STOPPED_BY_A_REPLY,
                    "a parent replied: stop chasing this episode", now,
                    inputs={"reply_id": reply.reply_id, "contact_ref": reply.contact_ref},
                )
                log.info("triage.reply.recorded reply_id=%s pupils=%d", reply.reply_id,
                         len(fresh))
        return [None] * len(received)
