"""Runs stored actions when they fall due, re-checking the facts first (rules.md §3:
"re-check the mark at send time"). Actions are rows, not timers, so they survive restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from broker_messages.contact import ContactRequest, PupilRef
from broker_messages.topology import CONTACT_REQUEST_ROUTING_KEY
from servicekit.clock import Clock
from servicekit.database import supports_skip_locked
from servicekit.outbox import enqueue
from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triage import decisions as decision_store
from triage import rules
from triage.ingest import codes_by_pupil_day
from triage.models import outbox, pupils, scheduled_actions
from triage.schools import SchoolContextCache

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        schools: SchoolContextCache,
        on_requested: Callable[[], None],
        batch_size: int = 200,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._schools = schools
        self._on_requested = on_requested
        self._batch_size = batch_size

    async def run_due(self) -> int:
        """Act on every action due by now; returns how many actions were settled."""
        total = 0
        while True:
            settled, requested = await self._run_batch()
            total += settled
            if requested:
                self._on_requested()
            if settled < self._batch_size:
                return total

    async def _run_batch(self) -> tuple[int, int]:
        now = self._clock.now()
        query = (
            select(scheduled_actions)
            .where(scheduled_actions.c.status == "pending", scheduled_actions.c.due_at <= now)
            .order_by(scheduled_actions.c.due_at, scheduled_actions.c.id)
            .limit(self._batch_size)
        )
        if supports_skip_locked(self._engine):
            query = query.with_for_update(skip_locked=True)
        requested = 0
        async with self._engine.begin() as conn:
            actions = (await conn.execute(query)).all()
            for action in actions:
                requested += await self._settle(conn, action, now)
        return len(actions), requested

    async def _settle(self, conn: AsyncConnection, action: Row, now: dt.datetime) -> int:
        contexts = await self._schools.load(conn, {action.school_urn})
        context = contexts.get(action.school_urn)
        pupil = (
            await conn.execute(
                select(pupils.c.record, pupils.c.on_roll).where(
                    pupils.c.school_urn == action.school_urn, pupils.c.pupil_id == action.pupil_id
                )
            )
        ).first()
        codes = (
            await codes_by_pupil_day(conn, action.school_urn, {action.pupil_id}, {action.date})
        ).get((action.pupil_id, action.date), {})
        if context is None or pupil is None:
            return await self._finish(conn, action, "cancelled", "school or pupil no longer known",
                                      now)
        reason = rules.first_day_contact_still_due(
            day=action.date, codes=codes, on_roll=pupil.on_roll, calendar=context.calendar,
            policy=context.policy, now=now, tz=context.tz,
        )
        if reason:
            return await self._finish(conn, action, "cancelled", reason, now, codes=codes)
        record = pupil.record
        recipients, skipped = rules.family_recipients(
            action.pupil_id, record.get("contacts", []), context.policy.first_day_contact.channels
        )
        if not recipients:
            return await self._finish(
                conn, action, "suppressed", "no parent or carer may be contacted",
                now, skipped=skipped,
            )
        request = ContactRequest(
            request_id=action.dedup_key,
            rule=action.rule,
            school=context.school,
            date=action.date,
            pupils=(PupilRef(pupil_id=action.pupil_id, given_name=record["given_name"],
                             family_name=record["family_name"]),),
            family=tuple(recipients),
            unreachable=tuple(context.staff_recipients("attendance_officer")),
            delivery=context.delivery_window(action.date),
            episode_start=action.date,
            requested_at=now,
        )
        await enqueue(
            conn, outbox,
            message_id=request.request_id,
            routing_key=CONTACT_REQUEST_ROUTING_KEY,
            body=request.model_dump_json(by_alias=True).encode(),
            now=now,
        )
        await self._finish(
            conn, action, "requested", "contact requested from the notifier", now,
            codes=codes, skipped=skipped, recipients=[r.ref for r in recipients],
        )
        return 1

    async def _finish(
        self, conn: AsyncConnection, action: Row, status: str, reason: str, now: dt.datetime,
        **inputs: object,
    ) -> int:
        await conn.execute(
            update(scheduled_actions)
            .where(scheduled_actions.c.id == action.id)
            .values(status=status, reason=reason, updated_at=now)
        )
        await decision_store.record(
            conn, rule=action.rule, school_urn=action.school_urn, pupil_id=action.pupil_id,
            dedup_key=action.dedup_key, outcome=status, reason=reason,
            inputs={"date": action.date.isoformat(), **inputs}, now=now,
        )
        return 0

    async def run(self, poll_seconds: float) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - database away: try again on the next tick
                log.exception("triage.scheduler.failed")
            await asyncio.sleep(poll_seconds)
