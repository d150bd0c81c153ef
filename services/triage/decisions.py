"""Storing decisions: scheduled actions (one per deduplication key) and the decision log. The
only module that writes `scheduled_actions` and `decisions`; the evaluator, the scheduler, the
periodic planner and the reply handling ask it.

An action's status moves only along `TRANSITIONS`, each as a conditional UPDATE from the
allowed source states, so a row settled elsewhere (another replica, a reply, an amendment) is
never settled again."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from broker_messages.contact import ContactCancelled
from broker_messages.topology import CONTACT_CANCEL_ROUTING_KEY
from servicekit.database import dialect_insert
from servicekit.outbox import enqueue
from sqlalchemy import ColumnElement, Insert, Row, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triage.models import decisions, outbox, scheduled_actions
from triage.rules import RULES, Decision, Schedule, Withdraw

# One decision for one pupil: the school, pupil and the day the rule looked at.
Placed = tuple[Decision, str, str, dt.date]

log = logging.getLogger(__name__)


class ActionStatus(StrEnum):
    """`scheduled_actions.status` (the stored values)."""

    PENDING = "pending"  # waiting for its time
    REQUESTED = "requested"  # handed to the notifier (or, for a family, family_unreachable)
    CANCELLED = "cancelled"  # the facts no longer hold; a mark back to N re-arms it
    SUPPRESSED = "suppressed"  # matched, but nobody is to be contacted


class Outcome(StrEnum):
    """`decisions.outcome`: what an evaluation or a settlement did."""

    SCHEDULED = "scheduled"
    REQUESTED = "requested"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"


# target -> the states it may be reached from. A requested action is recalled only for the
# rules docs/rules.md "Amendments" names (`Rule.recalled_after_request`); that is
# `_CANCELLABLE_NOW`. Re-arming a cancelled action is the upsert in `_actions_upsert`.
TRANSITIONS: dict[ActionStatus, frozenset[ActionStatus]] = {
    ActionStatus.PENDING: frozenset({ActionStatus.CANCELLED}),
    ActionStatus.REQUESTED: frozenset({ActionStatus.PENDING}),
    ActionStatus.SUPPRESSED: frozenset({ActionStatus.PENDING, ActionStatus.CANCELLED}),
    ActionStatus.CANCELLED: frozenset({ActionStatus.PENDING, ActionStatus.REQUESTED}),
}

# docs/rules.md "Amendments": re-coding an N cancels these even after they were handed to the
# notifier, wherever the message waits (quiet hours, the rate limit, a fallback wait).
RECALLED_AFTER_REQUEST = tuple(rule.id for rule in RULES if rule.recalled_after_request)
# An action a withdrawal can still cancel: not yet due, or handed over but recallable.
_CANCELLABLE_NOW = or_(scheduled_actions.c.status == ActionStatus.PENDING,
                       (scheduled_actions.c.status == ActionStatus.REQUESTED)
                       & scheduled_actions.c.rule.in_(RECALLED_AFTER_REQUEST))


def _from(target: ActionStatus) -> ColumnElement[bool]:
    return scheduled_actions.c.status.in_(sorted(TRANSITIONS[target]))


async def record(
    conn: AsyncConnection,
    *,
    rule: str,
    school_urn: str,
    pupil_id: str,
    dedup_key: str,
    outcome: Outcome,
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
        .values(status=ActionStatus.CANCELLED, reason=decision.reason, updated_at=now)
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
                 dedup_key=decision.dedup_key, outcome=Outcome.CANCELLED, reason=reason,
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
        where=scheduled_actions.c.status == ActionStatus.CANCELLED,
    ).returning(scheduled_actions.c.dedup_key)


_LOG = decisions.insert()
_CANCELLABLE = select(scheduled_actions.c.dedup_key).where(
    scheduled_actions.c.dedup_key.in_(bindparam("keys", expanding=True)), _CANCELLABLE_NOW)


async def _store_all(conn: AsyncConnection, placed: list[Placed], now: dt.datetime) -> None:
    rows = [
        {"dedup_key": decision.dedup_key, "rule": decision.rule, "school_urn": urn,
         "pupil_id": pupil_id, "date": day,
         "episode_start": None if isinstance(decision, Withdraw) else decision.episode_start,
         "due_at": decision.due_at if isinstance(decision, Schedule) else now,
         "status": (ActionStatus.PENDING if isinstance(decision, Schedule)
                    else ActionStatus.SUPPRESSED),
         "reason": decision.reason, "created_at": now, "updated_at": now}
        for decision, urn, pupil_id, day in placed
    ]
    stored = set((await conn.execute(_actions_upsert(conn.dialect.name), rows)).scalars().all())
    log_rows = []
    for (decision, urn, pupil_id, _day), row in zip(placed, rows, strict=True):
        if decision.dedup_key not in stored:
            continue
        outcome = (Outcome.SCHEDULED if row["status"] == ActionStatus.PENDING
                   else Outcome.SUPPRESSED)
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
    conn: AsyncConnection, school_urn: str, pupil_ids: list[str], rules: Iterable[str],
    reason: str, now: dt.datetime, inputs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Cancel these pupils' pending actions of `rules`, recording why; returns their keys."""
    return await _cancel_pending(
        conn, reason, now, inputs or {}, scheduled_actions.c.school_urn == school_urn,
        scheduled_actions.c.pupil_id.in_(pupil_ids), scheduled_actions.c.rule.in_(list(rules)))


async def recall_requested(
    conn: AsyncConnection, school_urn: str, pupil_id: str, rules: Iterable[str], reason: str,
    now: dt.datetime, still_current: Callable[[dt.date], bool],
    inputs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Take back the pupil's actions of `rules` already handed to the notifier, for dates
    `still_current` keeps, as an amendment does (`_withdraw`: cancelled here, `contact.cancel`
    in the outbox in the same transaction). Only rules recalled after a request
    (`RECALLED_AFTER_REQUEST`) can be; returns the keys cancelled."""
    rows = (await conn.execute(
        select(scheduled_actions.c.dedup_key, scheduled_actions.c.rule, scheduled_actions.c.date)
        .where(scheduled_actions.c.school_urn == school_urn,
               scheduled_actions.c.pupil_id == pupil_id,
               scheduled_actions.c.status == ActionStatus.REQUESTED,
               scheduled_actions.c.rule.in_(sorted(set(rules) & set(RECALLED_AFTER_REQUEST))))
        .order_by(scheduled_actions.c.id))).all()
    recalled = []
    for dedup_key, rule, day in rows:
        if not still_current(day):
            continue
        if await _withdraw(conn, Withdraw(rule, dedup_key, reason, dict(inputs or {})),
                           school_urn, pupil_id, now):
            recalled.append(dedup_key)
    return recalled


async def cancel_pending_for_pupil(
    conn: AsyncConnection, school_urn: str, pupil_id: str, reason: str, now: dt.datetime
) -> None:
    """docs/rules.md "register_removal": every pending action of the pupil is cancelled."""
    await _cancel_pending(conn, reason, now, {}, scheduled_actions.c.school_urn == school_urn,
                          scheduled_actions.c.pupil_id == pupil_id)


async def _cancel_pending(conn: AsyncConnection, reason: str, now: dt.datetime,
                          inputs: Mapping[str, Any], *where: ColumnElement[bool]) -> list[str]:
    rows = await conn.execute(
        update(scheduled_actions)
        .where(*where, scheduled_actions.c.status == ActionStatus.PENDING)
        .values(status=ActionStatus.CANCELLED, reason=reason, updated_at=now)
        .returning(scheduled_actions.c.rule, scheduled_actions.c.school_urn,
                   scheduled_actions.c.pupil_id, scheduled_actions.c.dedup_key)
    )
    cancelled = rows.all()
    for rule, school_urn, pupil_id, dedup_key in cancelled:
        await record(conn, rule=rule, school_urn=school_urn, pupil_id=pupil_id,
                     dedup_key=dedup_key, outcome=Outcome.CANCELLED, reason=reason,
                     inputs=inputs, now=now)
    return [row.dedup_key for row in cancelled]


async def settle(conn: AsyncConnection, action: Row[Any], status: ActionStatus, reason: str,
                 now: dt.datetime, **inputs: object) -> bool:
    """A due action's outcome (the scheduler): `requested`, `cancelled` or `suppressed`, from
    `pending` only, recorded in the decision log. Returns False, recording nothing, if the
    action was settled elsewhere in the meantime."""
    request_id = inputs.get("request_id")
    moved = await conn.execute(
        update(scheduled_actions)
        # The scheduler claimed it as pending; only from there may it be settled.
        .where(scheduled_actions.c.id == action.id, _from(status),
               scheduled_actions.c.status == ActionStatus.PENDING)
        .values(status=status, reason=reason, updated_at=now,
                request_id=request_id if isinstance(request_id, str) else None)
    )
    if not moved.rowcount:
        log.warning("triage.action.already_settled rule=%s school_urn=%s pupil_id=%s",
                    action.rule, action.school_urn, action.pupil_id)
        return False
    await record(
        conn, rule=action.rule, school_urn=action.school_urn, pupil_id=action.pupil_id,
        dedup_key=action.dedup_key, outcome=Outcome(status), reason=reason,
        inputs={"date": action.date.isoformat(), **inputs}, now=now,
    )
    return True


async def schedule_new(conn: AsyncConnection, placed: list[Placed], now: dt.datetime) -> int:
    """Periodic rules' schedules (`triage.periodic`): each stored unless its key already is,
    whatever its state; only what was stored is logged. Returns how many were stored."""
    stored = 0
    insert = dialect_insert(conn.engine)
    for start in range(0, len(placed), 400):
        chunk = [(d, urn, pupil_id, day) for d, urn, pupil_id, day in placed[start : start + 400]
                 if isinstance(d, Schedule)]
        if not chunk:
            continue
        keys = set((await conn.execute(insert(scheduled_actions).values([
            {"dedup_key": d.dedup_key, "rule": d.rule, "school_urn": urn, "pupil_id": pupil_id,
             "date": day, "episode_start": d.episode_start, "due_at": d.due_at,
             "status": ActionStatus.PENDING, "reason": d.reason, "created_at": now,
             "updated_at": now}
            for d, urn, pupil_id, day in chunk
        ]).on_conflict_do_nothing().returning(scheduled_actions.c.dedup_key))).scalars())
        rows = [{"rule": d.rule, "school_urn": urn, "pupil_id": pupil_id,
                 "dedup_key": d.dedup_key, "outcome": Outcome.SCHEDULED, "reason": d.reason,
                 "inputs": dict(d.inputs), "decided_at": now}
                for d, urn, pupil_id, _ in chunk if d.dedup_key in keys]
        if rows:
            await conn.execute(_LOG, rows)
        stored += len(rows)
    return stored
