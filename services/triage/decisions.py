"""Storing decisions: scheduled actions (one per deduplication key) and the decision log."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from servicekit.database import dialect_insert
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import decisions, scheduled_actions
from triage.rules import Decision, Schedule, Withdraw

# One decision for one pupil: the school, pupil and the day the rule looked at.
Placed = tuple[Decision, str, str, dt.date]

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
            episode_start=decision.episode_start,
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


async def apply_all(conn: AsyncConnection, placed: list[Placed], now: dt.datetime) -> None:
    """Store a batch's decisions. Withdrawals are the common case (most marks cancel nothing)
    and go out as one UPDATE; the rest one by one."""
    withdrawals = {d.dedup_key: (d, urn, pupil) for d, urn, pupil, _ in placed
                   if isinstance(d, Withdraw)}
    if withdrawals:
        await _withdraw_all(conn, withdrawals, now)
    for decision, urn, pupil_id, day in placed:
        if not isinstance(decision, Withdraw):
            await apply(conn, decision, urn, pupil_id, day, now)


async def _withdraw_all(conn: AsyncConnection,
                        withdrawals: dict[str, tuple[Withdraw, str, str]],
                        now: dt.datetime) -> None:
    keys = list(withdrawals)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        pending = (await conn.execute(
            select(scheduled_actions.c.dedup_key).where(
                scheduled_actions.c.dedup_key.in_(chunk),
                scheduled_actions.c.status == "pending",
            )
        )).scalars().all()
        for dedup_key in pending:
            await apply(conn, withdrawals[dedup_key][0], withdrawals[dedup_key][1],
                        withdrawals[dedup_key][2], now.date(), now)


async def cancel_pending(
    conn: AsyncConnection, school_urn: str, pupil_ids: list[str], rules: tuple[str, ...],
    reason: str, now: dt.datetime, inputs: Mapping[str, Any] | None = None,
) -> int:
    """Cancel these pupils' pending actions of `rules`, recording why; returns how many."""
    rows = await conn.execute(
        update(scheduled_actions)
        .where(
            scheduled_actions.c.school_urn == school_urn,
            scheduled_actions.c.pupil_id.in_(pupil_ids),
            scheduled_actions.c.rule.in_(rules),
            scheduled_actions.c.status == "pending",
        )
        .values(status="cancelled", reason=reason, updated_at=now)
        .returning(scheduled_actions.c.rule, scheduled_actions.c.pupil_id,
                   scheduled_actions.c.dedup_key)
    )
    cancelled = rows.all()
    for rule, pupil_id, dedup_key in cancelled:
        await record(conn, rule=rule, school_urn=school_urn, pupil_id=pupil_id,
                     dedup_key=dedup_key, outcome="cancelled", reason=reason,
                     inputs=inputs or {}, now=now)
    return len(cancelled)


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
