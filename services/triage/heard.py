"""Hearing from a family (docs/rules.md "Replies"): a reply relayed by the notifier, staff who
spoke to the family, a parent who told the school first. Each is kept against the pupils it is
about and stops chasing them; none changes a register code, only the school classifies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from servicekit.database import dialect_insert
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from triage import decisions as decision_store
from triage.models import replies
from triage.rules import RULES

# What hearing from the family stops: the chasing of the family, not professional alerts.
STOPPED_BY_A_REPLY = tuple(rule.id for rule in RULES if rule.stopped_by_reply)
# Family contacts an amendment recalls after hand-over; hearing from the family outside a
# reply to them (staff spoke to them, they told the school first) recalls them too.
FAMILY_RECALLED = tuple(rule.id for rule in RULES if rule.family and rule.recalled_after_request)


async def record_reply(conn: AsyncConnection, school_urn: str, pupil_ids: Iterable[str], *,
                       reply_id: str, contact_ref: str, received_at: dt.datetime, reason: str,
                       now: dt.datetime) -> tuple[list[str], list[str]] | None:
    """Keep the reply against each pupil and stop chasing them: their pending actions of the
    rules a reply stops are cancelled with `reason`. Returns the pupils it was new for and the
    keys of the actions cancelled, or None when it was not new for any (redelivered)."""
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


async def forget_reply(conn: AsyncConnection, reply_id: str) -> None:
    """The school says it was not the family being heard (a dismissed report): later re-checks
    (`Need.REPLY`) no longer see it."""
    await conn.execute(delete(replies).where(replies.c.reply_id == reply_id))
