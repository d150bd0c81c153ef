"""`GET /api/v1/pupils/{id}/timeline`: what a safeguarding lead shows an inspector — the
pupil's current marks and every mark ever received (amendments keep what they replaced), every
rule decision with its reason and inputs (recipients skipped, and why), tasks, the contacts
requested, parents' replies and the explanations they sent first, in time order, with the rates for the school year."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import orjson
from broker_messages.codes import canonical_code
from broker_messages.events import RegisterMark
from fastapi import APIRouter, HTTPException, Query
from servicekit.web import Authenticated, ensure_school
from sqlalchemy import select

from triage import counters
from triage.decisions import ActionStatus
from triage.deps import SchoolsDep, ServiceDep, TimelineReader
from triage.models import (
    decisions,
    explanation_pupils,
    explanations,
    marks,
    pupils,
    received_events,
    replies,
    scheduled_actions,
    tasks,
)
from triage.rates import rates_actionable, school_year_start
from triage.rules import persistent_absence, severe_absence

router = APIRouter(prefix="/api/v1", dependencies=[Authenticated])


@router.get("/pupils/{pupil_id}/timeline")
async def pupil_timeline(
    pupil_id: str,
    service: ServiceDep,
    cache: SchoolsDep,
    caller: TimelineReader,
    school_urn: Annotated[str, Query(pattern=r"^[0-9]{6,8}$")],
    since: dt.date | None = None,
) -> dict[str, Any]:
    ensure_school(caller, school_urn)
    today = service.clock.now().date()
    since = since or school_year_start(today)
    async with service.engine.connect() as conn:
        pupil = (await conn.execute(select(pupils.c.on_roll, pupils.c.removed_on).where(
            pupils.c.school_urn == school_urn, pupils.c.pupil_id == pupil_id))).first()
        if pupil is None:
            raise HTTPException(404, "no such pupil at this school")
        of_pupil = {"school_urn": school_urn, "pupil_id": pupil_id}

        def where(table: Any) -> Any:
            return [table.c[k] == v for k, v in of_pupil.items()]

        mark_rows = await conn.execute(
            select(marks.c.date, marks.c.session, marks.c.code, marks.c.recorded_at,
                   marks.c.event_id)
            .where(*where(marks), marks.c.date >= since).order_by(marks.c.date, marks.c.session))
        received = await conn.execute(
            select(received_events.c.payload, received_events.c.received_at)
            .where(*where(received_events), received_events.c.kind == "register.mark/v1"))
        current = {(r.date, r.session): r.event_id for r in (await conn.execute(
            select(marks.c.date, marks.c.session, marks.c.event_id)
            .where(*where(marks), marks.c.date >= since))).all()}
        decision_rows = await conn.execute(
            select(decisions.c.decided_at, decisions.c.rule, decisions.c.outcome,
                   decisions.c.reason, decisions.c.inputs, decisions.c.dedup_key)
            .where(*where(decisions)).order_by(decisions.c.id))
        action_rows = await conn.execute(
            select(scheduled_actions.c.rule, scheduled_actions.c.dedup_key,
                   scheduled_actions.c.date, scheduled_actions.c.episode_start,
                   scheduled_actions.c.due_at, scheduled_actions.c.status,
                   scheduled_actions.c.reason, scheduled_actions.c.updated_at)
            .where(*where(scheduled_actions)).order_by(scheduled_actions.c.id))
        task_rows = await conn.execute(
            select(tasks.c.id, tasks.c.kind, tasks.c.episode_start, tasks.c.status,
                   tasks.c.detail, tasks.c.due_at, tasks.c.outcome, tasks.c.created_at,
                   tasks.c.updated_at)
            .where(*where(tasks)).order_by(tasks.c.id))
        reply_rows = await conn.execute(
            select(replies.c.reply_id, replies.c.contact_ref, replies.c.received_at)
            .where(*where(replies)).order_by(replies.c.received_at))
        explanation_rows = await conn.execute(
            select(explanations.c.id, explanations.c.received_at, explanations.c.matched,
                   explanations.c.status, explanations.c.decided_at, explanations.c.decided_by,
                   explanations.c.code)
            .join(explanation_pupils, explanation_pupils.c.explanation_id == explanations.c.id)
            .where(*where(explanation_pupils)).order_by(explanations.c.received_at))
        year = school_year_start(today)
        counts = (await counters.load(conn, [(school_urn, pupil_id, year)])).popitem()[1]
        policy = (await cache.load(conn, [school_urn]))[school_urn].policy
        actions = [dict(r._mapping) for r in action_rows]
        return {
            "school_urn": school_urn,
            "pupil_id": pupil_id,
            "on_roll": pupil.on_roll,
            "removed_on": pupil.removed_on,
            "rates": {"year_start": year, "possible_sessions": counts.possible,
                      "absent_sessions": counts.absent,
                      "unauthorised_sessions": counts.unauthorised,
                      "attendance_rate": round(counts.attendance_rate, 4),
                      "absence_rate": round(counts.absence_rate, 4),
                      # As the rules judge them: never on fewer sessions than the policy's
                      # minimum (docs/rules.md "Rates").
                      **{name: rates_actionable(counts, policy.min_possible_sessions)
                         and rule.threshold(policy).crossed(counts)
                         for name, rule in (("persistent", persistent_absence),
                                            ("severe", severe_absence))}},
            "marks": [dict(r._mapping) for r in mark_rows],
            "mark_history": _mark_history(received, current, since),
            "decisions": [dict(r._mapping) for r in decision_rows],
            "actions": actions,
            "notifications_requested": [a for a in actions if a["status"] == ActionStatus.REQUESTED],
            "tasks": [dict(r._mapping) for r in task_rows],
            "replies": [dict(r._mapping) for r in reply_rows],
            # What the family told the school first, and what the school did with it (the
            # text itself is on the explanations list, for the officer).
            "explanations": [dict(r._mapping) for r in explanation_rows],
        }


def _mark_history(received: Any, current: dict[tuple[dt.date, str], str],
                  since: dt.date) -> list[dict[str, Any]]:
    """Every register mark received for the pupil since `since`, as sent (a legacy code shows
    as sent, with what it was stored as), in register order; `current` marks the one in force.
    Office comments stay out: they are not for this record's readers."""
    history = []
    for payload, received_at in received:
        event = RegisterMark.model_validate(
            orjson.loads(payload) if isinstance(payload, str | bytes) else payload)
        if event.date < since:
            continue
        history.append({
            "date": event.date, "session": event.session, "code": event.code,
            "stored_as": canonical_code(event.code), "recorded_at": event.recorded_at,
            "received_at": received_at, "source": event.source or "broker",
            "event_id": event.event_id,
            "current": current.get((event.date, event.session)) == event.event_id,
        })
    return sorted(history, key=lambda m: (m["date"], m["session"], m["recorded_at"]))
