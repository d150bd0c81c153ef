"""Storing decisions: scheduled actions (one per deduplication key) and the decision log."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from servicekit.database import dialect_insert
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import decisions, scheduled_actions
from triage.rules import Decision, Schedule, Withdraw

log = logging.getLogger(__name__)


async def record(
    conn: AsyncConnection,
    *,
    rule: str,
    school_urn: str,
    pupil_id: str,
    dedup_key: str,
    outcome: str,
    reason: str,
    inputs: Mapping[str, Any],
    now: dt.datetime,
) -> None:
    await conn.execute(
        decisions.insert().values(
            rule=rule,
            school_urn=school_urn,
            pupil_id=pupil_id,
            dedup_key=dedup_key,
            outcome=outcome,
            reason=reason,
            inputs=dict(inputs),
            decided_at=now,
        )
    )
    log.info("triage.decision.%s rule=%s school_urn=%s pupil_id=%s", outcome, rule, school_urn,
             pupil_id)


async def apply(
    conn: AsyncConnection,
    decision: Decision,
    school_urn: str,
    pupil_id: str,
    day: dt.date,
    now: dt.datetime,
) -> None:
    """Store a rule's decision. Each takes effect at most once per deduplication key, so
    redelivered and replayed events change nothing."""
    if isinstance(decision, Withdraw):
        cancelled = await conn.execute(
            update(scheduled_actions)
            .where(
                scheduled_actions.c.dedup_key == decision.dedup_key,
                scheduled_actions.c.status == "pending",
            )
            .values(status="cancelled", reason=decision.reason, updated_at=now)
            .returning(scheduled_actions.c.id)
        )
        if cancelled.first() is None:
            return
        outcome = "cancelled"
    else:
        status = "pending" if isinstance(decision, Schedule) else "suppressed"
        due_at = decision.due_at if isinstance(decision, Schedule) else now
        statement = dialect_insert(conn.engine)(scheduled_actions).values(
            dedup_key=decision.dedup_key,
            rule=decision.rule,
            school_urn=school_urn,
            pupil_id=pupil_id,
            date=day,
            due_at=due_at,
            status=status,
            reason=decision.reason,
            created_at=now,
            updated_at=now,
        )
        # A cancelled action comes back if the mark returns to N (it never fired); anything
        # else already stored under this key wins.
        statement = statement.on_conflict_do_update(
            index_elements=[scheduled_actions.c.dedup_key],
            set_={"status": status, "due_at": due_at, "reason": decision.reason, "updated_at": now},
            where=scheduled_actions.c.status == "cancelled",
        ).returning(scheduled_actions.c.id)
        if (await conn.execute(statement)).first() is None:
            return
        outcome = "scheduled" if isinstance(decision, Schedule) else "suppressed"
    await record(
        conn,
        rule=decision.rule,
        school_urn=school_urn,
        pupil_id=pupil_id,
        dedup_key=decision.dedup_key,
        outcome=outcome,
        reason=decision.reason,
        inputs=decision.inputs,
        now=now,
    )


async def cancel_pending_for_pupil(
    conn: AsyncConnection, school_urn: str, pupil_id: str, reason: str, now: dt.datetime
) -> None:
    rows = await conn.execute(
        update(scheduled_actions)
        .where(
            scheduled_actions.c.school_urn == school_urn,
            scheduled_actions.c.pupil_id == pupil_id,
            scheduled_actions.c.status == "pending",
        )
        .values(status="cancelled", reason=reason, updated_at=now)
        .returning(scheduled_actions.c.rule, scheduled_actions.c.dedup_key)
    )
    for rule, dedup_key in rows.all():
        await record(conn, rule=rule, school_urn=school_urn, pupil_id=pupil_id,
                     dedup_key=dedup_key, outcome="cancelled", reason=reason, inputs={}, now=now)
