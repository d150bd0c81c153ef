"""Runs stored actions when they fall due, re-checking the facts first (docs/rules.md "The rules":
"re-check the mark at send time"). Actions are rows, not timers, so they survive restarts.

Family messages due in the same run whose first contact is the same person are sent as one
request naming every pupil (docs/rules.md "Siblings"); each pupil's decision is still recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker_messages.contact import ContactRequest, FollowOn, PupilRef
from broker_messages.topology import CONTACT_REQUEST_ROUTING_KEY
from servicekit.clock import Clock
from servicekit.database import supports_skip_locked
from servicekit.outbox import enqueue
from sqlalchemy import Select, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triage import decisions as decision_store
from triage import history, outreach, tasks
from triage.decisions import ActionStatus, Outcome
from triage.models import outbox, scheduled_actions
from triage.periodic import (
    all_schools,
    parked_warnings,
    plan_attendance_updates,
    plan_unexplained_checks,
)
from triage.rules import family_unreachable, rule_named
from triage.rules.recipients import channel_notes, first_contact_address, social_worker
from triage.rules.rule import Outreach, TaskToOpen
from triage.school_document import Pupil
from triage.schools import SchoolContext, SchoolContextCache

log = logging.getLogger(__name__)


@dataclass
class _FamilyPart:
    action: Row[Any]
    context: SchoolContext
    pupil: PupilRef
    plan: Outreach
    record: Pupil


def request_id_for(dedup_keys: list[str]) -> str:
    """Deterministic from the sorted dedup keys, so a re-run asks for the same thing; hashed
    when too long for the notifier's idempotency key (200 characters)."""
    joined = "+".join(sorted(dedup_keys))
    if len(joined) <= 200:
        return joined
    return "merged:" + hashlib.sha256(joined.encode()).hexdigest()


def action_key(action: Row[Any]) -> str:
    """The action's dedup key, with its generation once a cancelled request was re-armed: the
    notifier keeps a cancelled request cancelled, so asking again needs a new id."""
    return action.dedup_key if not action.generation else f"{action.dedup_key}#{action.generation}"


class Scheduler:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        schools: SchoolContextCache,
        on_requested: Callable[[], None],
        batch_size: int = 200,
        parked_days: int = 30,
        parked_warn_days: int = 7,
    ) -> None:
        """`parked_days`, `parked_warn_days`: docs/rules.md "parked_marks_expiring"."""
        self._engine = engine
        self._clock = clock
        self._schools = schools
        self._on_requested = on_requested
        self._batch_size = batch_size
        self._parked_days = parked_days
        self._parked_warn_days = parked_warn_days

    async def run_due(self) -> int:
        """Act on every action due by now; returns how many actions were settled."""
        async with self._engine.begin() as conn:
            contexts = await all_schools(conn, self._schools)
            await plan_attendance_updates(conn, contexts, self._clock.now())
            await plan_unexplained_checks(conn, contexts, self._clock.now())
            warnings = await parked_warnings(conn, contexts, self._clock.now(),
                                             self._parked_days, self._parked_warn_days)
            for request in warnings:
                await self._enqueue(conn, request, self._clock.now())
        if warnings:
            self._on_requested()
        total = 0
        while True:
            settled, requested = await self._run_batch()
            total += settled
            if requested:
                self._on_requested()
            if settled < self._batch_size:
                return total

    def _due(self, now: dt.datetime) -> Select[Any]:
        """Pending actions due by `now`, oldest first, claimed where replicas could race."""
        query = (
            select(scheduled_actions)
            .where(scheduled_actions.c.status == ActionStatus.PENDING,
                   scheduled_actions.c.due_at <= now)
            .order_by(scheduled_actions.c.due_at, scheduled_actions.c.id)
        )
        if supports_skip_locked(self._engine):
            query = query.with_for_update(skip_locked=True)
        return query

    async def _run_batch(self) -> tuple[int, int]:
        now = self._clock.now()
        query = self._due(now).limit(self._batch_size)
        requested = 0
        async with self._engine.begin() as conn:
            actions = (await conn.execute(query)).all()
            if not actions:
                return 0, 0
            actions += await self._rest_of_schools(conn, actions, now)
            contexts = await self._schools.load(conn, {a.school_urn for a in actions})
            records = {key: (contexts[key[0]].pupil(record), on_roll)
                       for key, (record, on_roll) in (await history.roster_records_many(
                           conn, {(a.school_urn, a.pupil_id) for a in actions})).items()}
            batch = await outreach.batch_facts(conn, actions)
            family_parts: list[_FamilyPart] = []
            for action in actions:
                requested += await self._settle(conn, action, contexts, records, batch,
                                                family_parts, now)
            requested += await self._send_family(conn, family_parts, now)
        return len(actions), requested

    async def _rest_of_schools(self, conn: AsyncConnection, actions: list[Row[Any]],
                               now: dt.datetime) -> list[Row[Any]]:
        """docs/rules.md "Siblings": brothers and sisters share a message only when their actions
        are settled together, so a batch takes every due action of the schools it touches. A
        batch cut at `batch_size` alone would text a family twice whenever the cut fell
        between two siblings (6 of 859 families in a 105,000-pupil morning)."""
        query = self._due(now).where(
            scheduled_actions.c.school_urn.in_(sorted({a.school_urn for a in actions})),
            scheduled_actions.c.id.not_in([a.id for a in actions]))
        return list((await conn.execute(query)).all())

    async def _settle(self, conn: AsyncConnection, action: Row[Any],
                      contexts: dict[str, SchoolContext],
                      records: dict[tuple[str, str], tuple[Pupil, bool]],
                      batch: outreach.BatchFacts, family_parts: list[_FamilyPart],
                      now: dt.datetime) -> int:
        context = contexts.get(action.school_urn)
        found = records.get((action.school_urn, action.pupil_id))
        rule = rule_named(action.rule)
        if context is None or found is None or rule is None:
            return await self._finish(conn, action, ActionStatus.CANCELLED,
                                      "school or pupil no longer known", now)
        record, on_roll = found
        plan = await outreach.plan(conn, outreach.due_action(action), context, record, on_roll,
                                   now, batch)
        if plan.cancel:
            return await self._finish(conn, action, ActionStatus.CANCELLED, plan.cancel, now)
        for task in plan.tasks:
            await self._open(conn, action, task, now)
        requested = 0
        if not plan.family and rule.must_reach_family:
            # docs/rules.md "family_unreachable": never silence. The officer and the social
            # worker hear at once, and the officer gets a task.
            requested += await self._family_unreachable(conn, action, context, record, plan, now)
            if not plan.professionals:
                return requested
        if not plan.family and not plan.professionals:
            return await self._finish(conn, action, ActionStatus.SUPPRESSED,
                                      "nobody to contact: no usable address for any recipient",
                                      now, skipped=plan.skipped)
        if plan.professionals:
            # Professional alerts are safeguarding: not held for quiet hours (docs/rules.md "Contacting people").
            staff_id = action_key(action) + (":staff" if plan.family else "")
            await self._enqueue(conn, ContactRequest(
                request_id=staff_id, rule=action.rule, school=context.school, date=action.date,
                pupils=(_pupil_ref(record),), recipients=tuple(plan.professionals),
                safeguarding=True, episode_start=plan.episode_start,
                details={**plan.details, **plan.staff_details}, requested_at=now,
            ), now)
            requested += 1
        if plan.family:
            family_parts.append(_FamilyPart(action, context, _pupil_ref(record),
                                            plan, record))
        elif not rule.must_reach_family:
            await self._finish(conn, action, ActionStatus.REQUESTED,
                               "alert requested from the notifier", now, skipped=plan.skipped,
                               request_id=staff_id,
                               recipients=[p.ref for p in plan.professionals])
        return requested

    async def _family_unreachable(self, conn: AsyncConnection, action: Row[Any],
                                  context: SchoolContext, record: Pupil,
                                  plan: Outreach, now: dt.datetime) -> int:
        """Nobody in the family can be contacted for `action`: task, alert and the record."""
        raised = family_unreachable.raised(outreach.due_action(action), context, record,
                                           plan.skipped)
        await self._open(conn, action, raised.task, now)
        request_id = family_unreachable.dedup_key(context.urn, action.pupil_id, action.date,
                                                  action.rule)
        if raised.alerted:
            await self._enqueue(conn, ContactRequest(
                request_id=request_id, rule=family_unreachable.ID, school=context.school,
                date=action.date, pupils=(_pupil_ref(record),),
                recipients=tuple(raised.alerted), safeguarding=True, episode_start=action.date,
                details=raised.details, requested_at=now,
            ), now)
        await decision_store.record(
            conn, rule=family_unreachable.ID, school_urn=context.urn, pupil_id=action.pupil_id,
            dedup_key=request_id, outcome=Outcome.REQUESTED, reason=raised.reason,
            inputs={"date": action.date.isoformat(), "about": action.dedup_key,
                    "skipped": plan.skipped, "alerted": [r.ref for r in raised.alerted]},
            now=now)
        await self._finish(conn, action, ActionStatus.SUPPRESSED,
                           f"nobody in the family can be contacted ({raised.why}): "
                           "family_unreachable raised instead", now, skipped=plan.skipped,
                           request_id=request_id)
        return 1 if raised.alerted else 0

    async def _open(self, conn: AsyncConnection, action: Row[Any], task: TaskToOpen,
                    now: dt.datetime) -> None:
        await tasks.open_task(conn, kind=task.kind, school_urn=action.school_urn,
                              pupil_id=action.pupil_id, day=task.day, detail=task.detail,
                              now=now)

    async def _send_family(self, conn: AsyncConnection, parts: list[_FamilyPart],
                           now: dt.datetime) -> int:
        # docs/rules.md "Siblings": one carer, one text. Absent children whose first contact is
        # the same carer share one message naming them all, when its details are the same for
        # each. If their whole chains match, the chain is shared too; otherwise the shared carer
        # comes first and, if not reached, each child's own chain goes on naming only that
        # child (`follow_on`), so nobody is told about a child they may not be contacted about.
        groups: dict[tuple[Any, ...], list[_FamilyPart]] = defaultdict(list)
        informing = 0
        for part in parts:
            rule = rule_named(part.action.rule)
            if rule is not None and rule.every_contact:
                await self._inform_everyone(conn, part, now)
                informing += 1
                continue
            details = tuple(sorted(part.plan.details.items()))
            groups[(part.context.urn, part.action.rule, part.action.date,
                    first_contact_address(part.plan.family[0]), details)].append(part)
        for group in groups.values():
            group.sort(key=lambda p: p.pupil.pupil_id)
            await self._request_family(conn, group, now)
        return len(groups) + informing

    async def _inform_everyone(self, conn: AsyncConnection, part: _FamilyPart,
                               now: dt.datetime) -> None:
        """docs/rules.md "Contact order": information goes to every family recipient, each a
        request of their own (a chain of one, so opt-outs, quiet hours and replies work as for
        any family message); nobody is told when one cannot be reached."""
        base = action_key(part.action)
        requests = []
        for recipient in part.plan.family:
            request = ContactRequest(
                request_id=request_id_for([base, recipient.ref]), rule=part.action.rule,
                school=part.context.school, date=part.action.date, pupils=(part.pupil,),
                family=(recipient,), delivery=part.context.delivery_window(part.action.date),
                episode_start=part.plan.episode_start, details=part.plan.details,
                requested_at=now)
            await self._enqueue(conn, request, now)
            requests.append(request.request_id)
        await self._finish(conn, part.action, ActionStatus.REQUESTED,
                           f"sent to every contact who may hear it ({len(requests)})"
                           + channel_notes(part.plan.skipped), now,
                           skipped=part.plan.skipped,
                           recipients=[f.ref for f in part.plan.family], requests=requests)

    async def _request_family(self, conn: AsyncConnection, group: list[_FamilyPart],
                              now: dt.datetime) -> None:
        lead = group[0]
        chains = {tuple(first_contact_address(c) for c in p.plan.family) for p in group}
        shared = len(chains) == 1
        keys = [action_key(p.action) for p in group]
        unreachable = []
        lead_rule = rule_named(lead.action.rule)
        if lead_rule is not None and lead_rule.must_reach_family:
            # docs/rules.md "family_unreachable": only a contact the school must make raises it
            # (officer and social worker); opt-in information (the weekly update) does not, so
            # an opted-out family is not reported again every week.
            unreachable = [*lead.context.staff_recipients("attendance_officer"),
                           *(worker for p in group for worker in social_worker(p.record))]
        request = ContactRequest(
            request_id=request_id_for(keys), rule=lead.action.rule,
            school=lead.context.school, date=lead.action.date,
            pupils=tuple(p.pupil for p in group),
            family=tuple(lead.plan.family) if shared else (lead.plan.family[0],),
            follow_on=() if shared else tuple(
                FollowOn(pupil_id=p.pupil.pupil_id, family=tuple(p.plan.family[1:]))
                for p in group),
            unreachable=tuple(unreachable),
            delivery=lead.context.delivery_window(lead.action.date),
            episode_start=lead.plan.episode_start, details=lead.plan.details,
            requested_at=now,
        )
        await self._enqueue(conn, request, now)
        for part in group:
            siblings = [p.pupil.pupil_id for p in group if p is not part]
            await self._finish(
                conn, part.action, ActionStatus.REQUESTED,
                "contact requested from the notifier" + channel_notes(part.plan.skipped),
                now, skipped=part.plan.skipped, recipients=[f.ref for f in part.plan.family],
                request_id=request.request_id,
                **({"sent_with_siblings": siblings} if siblings else {}),
            )

    async def _enqueue(self, conn: AsyncConnection, request: ContactRequest,
                       now: dt.datetime) -> None:
        await enqueue(conn, outbox, message_id=request.request_id,
                      routing_key=CONTACT_REQUEST_ROUTING_KEY,
                      body=request.model_dump_json(by_alias=True).encode(), now=now)

    async def _finish(
        self, conn: AsyncConnection, action: Row[Any], status: ActionStatus, reason: str,
        now: dt.datetime, **inputs: object,
    ) -> int:
        """Settle the action (`triage.decisions` owns the row); nothing more to request."""
        await decision_store.settle(conn, action, status, reason, now, **inputs)
        return 0

    async def run(self, poll_seconds: float) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Database away: try again on the next tick.
                log.exception("triage.scheduler.failed")
            await asyncio.sleep(poll_seconds)


def _pupil_ref(pupil: Pupil) -> PupilRef:
    return PupilRef(pupil_id=pupil.id, given_name=pupil.given_name,
                    family_name=pupil.family_name)
