"""Storing decisions: scheduled actions (one per deduplication key) and the decision log."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from typing import Any

from servicekit.database import dialect_insert
from sqlalchemy import Insert, bindparam, select, update
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


async def _withdraw(conn: AsyncConnection, decision: Withdraw, school_urn: str, pupil_id: str,
                    now: dt.datetime) -> None:
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
    await record(conn, rule=decision.rule, school_urn=school_urn, pupil_id=pupil_id,
                 dedup_key=decision.dedup_key, outcome="cancelled", reason=decision.reason,
                 inputs=decision.inputs, now=now)


async def apply_all(conn: AsyncConnection, placed: list[Placed], now: dt.datetime) -> None:
    """Store a batch's decisions. Each takes effect at most once per deduplication key, so
    redelivered and replayed events change nothing.
    Withdrawals go first (most marks cancel nothing, so they are one SELECT); then every
    schedule and suppression of the batch is one upsert, the first decision for a key winning
    as it would in order, and what was stored one insert into the decision log."""
    withdrawals = {d.dedup_key: (d, urn, pupil) for d, urn, pupil, _ in placed
                   if isinstance(d, Withdraw)}
    if withdrawals:
        await _withdraw_all(conn, withdrawals, now)
    first: dict[str, Placed] = {}
    for item in placed:
        if not isinstance(item[0], Withdraw):
            first.setdefault(item[0].dedup_key, item)
    if first:
        await _store_all(conn, list(first.values()), now)


@functools.cache
def _actions_upsert(dialect_name: str) -> Insert:
    """Built once per dialect: every batch stores its decisions (see `history.pupil_rows`).
    A cancelled action comes back if the mark returns to N (it never fired); anything else
    already stored under the key wins, and is not returned."""
    insert = dialect_insert(dialect_name)(scheduled_actions)
    return insert.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[scheduled_actions.c.dedup_key],
        set_={"status": insert.excluded.status, "due_at": insert.excluded.due_at,
              "reason": insert.excluded.reason, "updated_at": insert.excluded.updated_at},
        where=scheduled_actions.c.status == "cancelled",
    ).returning(scheduled_actions.c.dedup_key)


_LOG = decisions.insert()
_PENDING = select(scheduled_actions.c.dedup_key).where(
    scheduled_actions.c.dedup_key.in_(bindparam("keys", expanding=True)),
    scheduled_actions.c.status == "pending")


async def _store_all(conn: AsyncConnection, placed: list[Placed], now: dt.datetime) -> None:
    rows = [
        {"dedup_key": decision.dedup_key, "rule": decision.rule, "school_urn": urn,
         "pupil_id": pupil_id, "date": day, "episode_start": decision.episode_start,
         "due_at": decision.due_at if isinstance(decision, Schedule) else now,
         "status": "pending" if isinstance(decision, Schedule) else "suppressed",
         "reason": decision.reason, "created_at": now, "updated_at": now}
        for decision, urn, pupil_id, day in placed
    ]
    stored = set((await conn.execute(_actions_upsert(conn.dialect.name), rows)).scalars().all())
    log_rows = []
    for (decision, urn, pupil_id, _day), row in zip(placed, rows, strict=True):
        if decision.dedup_key not in stored:
            continue
        outcome = "scheduled" if row["status"] == "pending" else "suppressed"
        log_rows.append({"rule": decision.rule, "school_urn": urn, "pupil_id": pupil_id,
                         "dedup_key": decision.dedup_key, "outcome": outcome,
                         "reason": decision.reason, "inputs": dict(decision.inputs),
                         "decided_at": now})
        log.info("triage.decision.%s rule=%s school_urn=%s pupil_id=%s", outcome,
                 decision.rule, urn, pupil_id)
    if log_rows:
        await conn.execute(_LOG, log_rows)


async def _withdraw_all(conn: AsyncConnection,
                        withdrawals: dict[str, tuple[Withdraw, str, str]],
                        now: dt.datetime) -> None:
    keys = list(withdrawals)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        pending = (await conn.execute(_PENDING, {"keys": chunk})).scalars().all()
        for dedup_key in pending:
            decision, urn, pupil_id = withdrawals[dedup_key]
            await _withdraw(conn, decision, urn, pupil_id, now)


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
