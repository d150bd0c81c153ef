"""What the notifier tells triage. A parent's reply (docs/rules.md "Replies"), from
`ReplyReceived`: attached to the pupils' open episodes, it stops further chasing; it never
changes a register code, only the school classifies absence. A text that answers nothing of
ours (`InboundUnmatched`): perhaps a parent telling the school first (`triage.explanations`). A family nobody could reach
(`FamilyUnreachable`, every contact tried): the `family_unreachable` decision and a task."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from broker_messages.contact import (
    FamilyOptedOut,
    FamilyUnreachable,
    InboundUnmatched,
    NotifierEvent,
    ReplyReceived,
)
from pydantic import TypeAdapter
from servicekit.clock import Clock
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triage import decisions as decision_store
from triage import tasks
from triage.decisions import Outcome
from triage.explanations import report_inbound
from triage.heard import record_reply
from triage.opt_outs import pass_on
from triage.rules import family_unreachable, rule_named
from triage.schools import SchoolContextCache

NotifierMessage = ReplyReceived | FamilyUnreachable | InboundUnmatched | FamilyOptedOut
EVENT_ADAPTER: TypeAdapter[NotifierMessage] = TypeAdapter(NotifierEvent)

log = logging.getLogger(__name__)

class ReplyRecorder:
    def __init__(self, engine: AsyncEngine, clock: Clock, schools: SchoolContextCache,
                 on_enqueued: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._clock = clock
        self._schools = schools
        # Wakes the outbox relay: an officer's alert or a recalled contact may be waiting.
        self._on_enqueued = on_enqueued

    async def apply(self, received: list[NotifierMessage]) -> list[str | None]:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            for reply in received:
                if isinstance(reply, FamilyUnreachable):
                    await _family_unreachable(conn, reply, now)
                    continue
                if isinstance(reply, InboundUnmatched):
                    await report_inbound(conn, reply, self._schools, now)
                    continue
                if isinstance(reply, FamilyOptedOut):
                    await pass_on(conn, reply, self._schools, now)
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
        self._on_enqueued()
        return [None] * len(received)


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
