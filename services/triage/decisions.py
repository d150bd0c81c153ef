"""Storing decisions: scheduled actions (one per deduplication key) and the decision log."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from typing import Any

from broker_messages.contact import ContactCancelled
from broker_messages.topology import CONTACT_CANCEL_ROUTING_KEY
from servicekit.database import dialect_insert
from servicekit.outbox import enqueue
from sqlalchemy import Insert, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import decisions, outbox, scheduled_actions
from triage.rules import Decision, Schedule, Withdraw
from triage.rules.decisions import (
    FIRST_DAY_CONTACT,
    LOOKED_AFTER_UNEXPLAINED,
    SOCIAL_WORKER_UNEXPLAINED,
)

# One decision for one pupil: the school, pupil and the day the rule looked at.
Placed = tuple[Decision, str, str, dt.date]

log = logging.getLogger(__name__)

# docs/rules.md "Amendments": re-coding an N cancels these even after they were handed to the
# notifier, wherever the message waits (quiet hours, the rate limit, a fallback wait).
CANCELLED_AFTER_REQUEST = (FIRST_DAY_CONTACT, SOCIAL_WORKER_UNEXPLAINED, LOOKED_AFTER_UNEXPLAINED)
# An action a withdrawal can still cancel: not yet due, or handed over but recallable.
_CANCELLABLE_NOW = or_(scheduled_actions.c.status == "pending",
                       (scheduled_actions.c.status == "requested")
                       & scheduled_actions.c.rule.in_(CANCELLED_AFTER_REQUEST))


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
                    now: dt.datetime) -> bool:
    """Cancel what the rule stored under the key; returns whether the notifier must be told."""
    cancelled = (await conn.execute(
        update(scheduled_actions)
        .where(
            scheduled_actions.c.dedup_key == decision.dedup_key, _CANCELLABLE_NOW)
        .values(status="cancelled", reason=decision.reason, updated_at=now)
        .returning(scheduled_actions.c.request_id)
    )).first()
    if cancelled is None:
        return False
    request_id = cancelled.request_id
    reason = decision.reason
    if request_id is not None:
        reason += "; the request already handed to the notifier is cancelled too"
        await enqueue(conn, outbox, message_id=f"cancel:{request_id}:{pupil_id}"[:200],
                      routing_key=CONTACT_CANCEL_ROUTING_KEY,
                      body=ContactCancelled(
                          request_id=request_id, school_urn=school_urn, pupil_ids=(pupil_id,),
                          reason=decision.reason[:500], cancelled_at=now,
                      ).model_dump_json(by_alias=True).encode(), now=now)
    await record(conn, rule=decision.rule, school_urn=school_urn, pupil_id=pupil_id,
                 dedup_key=decision.dedup_key, outcome="cancelled", reason=reason,
                 inputs={**decision.inputs, **({"request_id": request_id} if request_id else {})},
                 now=now)
    return request_id is not None


async def apply_all(conn: AsyncConnection, placed: list[Placed], now: dt.datetime) -> int:
    """Store a batch's decisions; returns how many cancellations were queued for the notifier. Each takes effect at most once per deduplication key, so
    redelivered and replayed events change nothing.
    Withdrawals go first (most marks cancel nothing, so they are one SELECT); then every
    schedule and suppression of the batch is one upsert, the first decision for a key winning
    as it would in order, and what was stored one insert into the decision log."""
    withdrawals = {d.dedup_key: (d, urn, pupil) for d, urn, pupil, _ in placed
                   if isinstance(d, Withdraw)}
    told = await _withdraw_all(conn, withdrawals, now) if withdrawals else 0
    first: dict[str, Placed] = {}
    for item in placed:
        if not isinstance(item[0], Withdraw):
            first.setdefault(item[0].dedup_key, item)
    if first:
        await _store_all(conn, list(first.values()), now)
    return told


@functools.cache
def _actions_upsert(dialect_name: str) -> Insert:
    """Built once per dialect: every batch stores its decisions (see `history.pupil_rows`).
    A cancelled action comes back if the mark returns to N; if it had been handed over, that
    request was cancelled, so the next one is a new generation with a request id of its own.
    Anything else already stored under the key wins, and is not returned."""
    insert = dialect_insert(dialect_name)(scheduled_actions)
    return insert.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[scheduled_actions.c.dedup_key],
        set_={"status": insert.excluded.status, "due_at": insert.excluded.due_at,
              "reason": insert.excluded.reason, "updated_at": insert.excluded.updated_at,
              "request_id": None, "generation": scheduled_actions.c.generation + 1},
        where=scheduled_actions.c.status == "cancelled",
    ).returning(scheduled_actions.c.dedup_key)


_LOG = decisions.insert()
_CANCELLABLE = select(scheduled_actions.c.dedup_key).where(
    scheduled_actions.c.dedup_key.in_(bindparam("keys", expanding=True)), _CANCELLABLE_NOW)


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
                        now: dt.datetime) -> int:
    keys = list(withdrawals)
    told = 0
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        cancellable = (await conn.execute(_CANCELLABLE, {"keys": chunk})).scalars().all()
        for dedup_key in cancellable:
            decision, urn, pupil_id = withdrawals[dedup_key]
            told += await _withdraw(conn, decision, urn, pupil_id, now)
    return told


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
