"""The notification log (`notifications`, docs/contract.md §4) and the status callbacks that
came too early for it (`early_status_callbacks`). This module is the only writer of both: the
intake and the chase store new rows here, the dispatcher claims and settles them, cancellations
and replies cancel them, the Twilio webhook records receipts.

Every status change is a conditional UPDATE on the statuses it may start from
(`TRANSITIONS`, `RECEIPTS`), and its row count says whether it happened. The claim, its expiry,
the send guard and `cancel_requested` are what make sending exactly-once through crashes
(notifier.dispatch).

A receipt can come before the provider id it names is recorded: the provider may call back
before the sender has committed its answer. It is kept, and applied in the transaction that
records the id, so the row ends as the callback said, with the same consequences. Recording an
id and looking for its callback both take a per-id lock first (PostgreSQL; SQLite has one
writer at a time), so the two cannot miss each other."""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from servicekit.database import dialect_insert, rows_table, rows_values, supports_skip_locked
from sqlalchemy import (
    Boolean,
    Integer,
    Row,
    String,
    Text,
    Update,
    and_,
    bindparam,
    case,
    delete,
    false,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier import chains, optout
from notifier.models import early_status_callbacks, notifications

# A row of any columns (a select of a few of them).
AnyRow = Row[*tuple[Any, ...]]
# Namespace of the per-provider-id advisory locks (PostgreSQL's two-key form).
_PROVIDER_ID_LOCKS = 0x4E0715

# Prefixed to the note of a row whose provider call had already started when the cancellation
# was recorded: it settles as the provider says, and staff can see why it went anyway.
SENT_ANYWAY = "cancellation arrived while this message was being sent; "


class Status(StrEnum):
    """Stored as these strings (docs/contract.md §4; `sending` is shown as `pending`)."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by a dispatcher
    SENT = "sent"
    # Written to the local outbox (no provider configured): nobody received it.
    WRITTEN = "written"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


_OPEN = frozenset({Status.PENDING, Status.SENDING})
_RECEIPTED = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.FAILED})
# A provider took the message: `sent` by Twilio or SMTP, `written` to the local outbox.
HANDED_OVER = frozenset({Status.SENT, Status.WRITTEN})

# transition -> the statuses it may start from.
TRANSITIONS: dict[str, frozenset[Status]] = {
    "claim": frozenset({Status.PENDING}),
    # A claim older than the expiry belongs to a process that died mid-send.
    "release_expired": frozenset({Status.SENDING}),
    # What the provider said about a claimed row. `pending`: another process found the claim
    # expired and released it meanwhile; what this one heard still stands, and recording it
    # stops a second send. `cancelled`: released, then cancelled while this send was under
    # way; if it went, the record must say so.
    "settle": _OPEN | {Status.CANCELLED},
    # Not sent yet and no longer wanted (a cancellation, a reply).
    "cancel": frozenset({Status.PENDING}),
}
# docs/contract.md §4: a status only moves forward; a late or repeated receipt never undoes a
# later state. Receipt status -> the statuses it may replace.
RECEIPTS: dict[Status, frozenset[Status]] = {
    Status.SENT: _OPEN,
    Status.DELIVERED: _OPEN | {Status.SENT},
    Status.UNDELIVERED: _OPEN | {Status.SENT},
    Status.FAILED: _OPEN | {Status.SENT},
    Status.SUPPRESSED: _OPEN | {Status.SENT} | _RECEIPTED,
}


@dataclass(frozen=True)
class Settlement:
    """How a claimed row's sending ended, as the dispatcher heard it."""

    status: Status
    attempts: int
    error: str | None = None
    provider_id: str | None = None
    # A provider call started: a cancellation recorded since did not stop it.
    started: bool = False


@dataclass(frozen=True)
class Receipt:
    """What one status callback did: rows changed, or kept until its id is recorded."""

    changed: list[Row[Any]]
    early: bool = False


async def add(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Store new rows (notifier.compose); one already stored under its key is left alone."""
    if rows:
        await conn.execute(dialect_insert(conn.engine)(notifications).on_conflict_do_nothing(),
                           rows)


async def claim_due(conn: AsyncConnection, now: dt.datetime, limit: int, *,
                    expiry: dt.timedelta, holding: set[Any]) -> list[Row[Any]]:
    """Release expired claims (except `holding`, this process's own), then claim due rows."""
    expired = update(notifications).where(
        notifications.c.status.in_(TRANSITIONS["release_expired"]),
        notifications.c.claimed_at < now - expiry)
    if holding:
        expired = expired.where(notifications.c.id.not_in(holding))
    # The message may or may not have gone: the provider is asked before any resend.
    await conn.execute(expired.values(status=Status.PENDING, uncertain=True))
    query = (select(notifications.c.id)
             .where(notifications.c.status.in_(TRANSITIONS["claim"]),
                    notifications.c.due_at <= now)
             .order_by(notifications.c.due_at, notifications.c.created_at)
             .limit(limit))
    if supports_skip_locked(conn.engine):
        query = query.with_for_update(skip_locked=True)
    ids = (await conn.execute(query)).scalars().all()
    if not ids:
        return []
    # The status condition makes the claim safe where SKIP LOCKED does not exist.
    return list((await conn.execute(
        update(notifications)
        .where(notifications.c.id.in_(ids), notifications.c.status.in_(TRANSITIONS["claim"]))
        .values(status=Status.SENDING, claimed_at=now, updated_at=now)
        .returning(*notifications.c))).all())


async def start_send(conn: AsyncConnection, claims: Sequence[tuple[str, dt.datetime]],
                     now: dt.datetime) -> set[str]:
    """The send guard, for a group of (id, claimed_at): mark each provider call as started
    unless a cancellation was recorded or the claim is no longer that one; returns the ids
    marked. One statement per claim time (a claim's rows share it)."""
    by_claim: dict[dt.datetime, list[str]] = {}
    for notification_id, claimed_at in claims:
        by_claim.setdefault(claimed_at, []).append(notification_id)
    marked: set[str] = set()
    for claimed_at, ids in by_claim.items():
        marked.update((await conn.execute(
            update(notifications)
            .where(notifications.c.id.in_(ids),
                   notifications.c.status == Status.SENDING,
                   notifications.c.claimed_at == claimed_at,
                   notifications.c.cancel_requested == false())
            .values(send_started_at=now)
            .returning(notifications.c.id))).scalars())
    return marked


async def cancelled_under_claim(conn: AsyncConnection, row: Row[Any]) -> bool:
    """Why the guard refused: a cancellation under this claim (True), or a lost claim."""
    now = (await conn.execute(
        select(notifications.c.status, notifications.c.claimed_at,
               notifications.c.cancel_requested)
        .where(notifications.c.id == row.id))).first()
    return (now is not None and now.status == Status.SENDING
            and now.claimed_at == row.claimed_at and bool(now.cancel_requested))


async def settle(conn: AsyncConnection, group: Sequence[tuple[Row[Any], Settlement]],
                 now: dt.datetime) -> list[Status | None]:
    """Record how claimed rows' sending ended, and apply any receipt that came before a row's
    provider id; returns the status each row ends in (None: it was settled elsewhere).

    A group of rows (notifier.group_commit) takes the same few statements as one: each
    row's values are chosen by id within one UPDATE."""
    provider_ids = sorted({s.provider_id for _, s in group if s.provider_id})
    await _lock_provider_ids(conn, provider_ids)
    dialect = conn.dialect.name
    settled = set((await conn.execute(
        _settle_statement(dialect),
        {"now": now, **rows_values(dialect, _SETTLE_NAMES, [
            (row.id, s.status, s.error, row.attempts + s.attempts, s.provider_id,
             s.status in HANDED_OVER, s.started) for row, s in group])})).scalars())
    statuses: dict[str, Status] = {row.id: s.status for row, s in group if row.id in settled}
    by_provider_id = {s.provider_id: row.id for row, s in group if row.id in settled}
    for early in await _take_early(conn, [p for p in provider_ids if p in by_provider_id]):
        row_id = by_provider_id[early.provider_id]
        if await _apply_receipt(conn, [notifications.c.id == row_id], Status(early.status),
                                early.error, now):
            statuses[row_id] = Status(early.status)
    await _consequences(conn, [(row, statuses[row.id]) for row, _ in group
                               if row.id in statuses], now)
    return [statuses.get(row.id) for row, _ in group]


_SETTLE_COLUMNS = (("id", String), ("status", String), ("error", Text), ("attempts", Integer),
                   ("provider_id", String), ("handed", Boolean), ("started", Boolean))
_SETTLE_NAMES = tuple(name for name, _ in _SETTLE_COLUMNS)


@functools.cache
def _settle_statement(dialect_name: str) -> Update:
    """`settle`'s one UPDATE for a group of rows, each row's values joined in by id (a
    `rows_table`): compiled once whatever the group's size, where a CASE choosing by id had
    a shape for every size and a tenth of the notifier's time against the instant stub went
    on compiling and keying them."""
    given = rows_table(dialect_name, _SETTLE_COLUMNS)
    now = bindparam("now", type_=notifications.c.updated_at.type)
    return (
        update(notifications)
        .where(notifications.c.id == given.c.id,
               notifications.c.status.in_(TRANSITIONS["settle"]))
        .values(status=given.c.status, error=given.c.error, attempts=given.c.attempts,
                provider_id=case((given.c.handed, given.c.provider_id),
                                 else_=notifications.c.provider_id),
                sent_at=case((given.c.handed, now), else_=notifications.c.sent_at),
                # A cancellation recorded after the send started: the record says it went
                # anyway.
                note=case((and_(given.c.started, notifications.c.cancel_requested),
                           literal(SENT_ANYWAY) + notifications.c.note),
                          else_=notifications.c.note),
                updated_at=now, claimed_at=None, uncertain=False)
        .returning(notifications.c.id))


async def record_receipt(conn: AsyncConnection, provider_id: str, status: Status,
                         error: str | None, now: dt.datetime) -> Receipt:
    """A status callback: applied to the row with this provider id where its status allows,
    or kept for when the id is recorded."""
    await _lock_provider_id(conn, provider_id)
    changed = await _apply_receipt(conn, [notifications.c.provider_id == provider_id], status,
                                   error, now)
    await _consequences(conn, [(row, status) for row in changed], now)
    if changed:
        return Receipt(changed)
    known = (await conn.execute(select(notifications.c.id)
                                .where(notifications.c.provider_id == provider_id)
                                .limit(1))).first()
    if known is not None:  # a late or repeated receipt: nothing moves back
        return Receipt([])
    await conn.execute(
        dialect_insert(conn.engine)(early_status_callbacks)
        .values(provider_id=provider_id, status=status, error=error, received_at=now)
        .on_conflict_do_nothing())
    return Receipt([], early=True)


async def cancel_pending(conn: AsyncConnection, request_ids: list[str], note: str,
                         now: dt.datetime, *, family_only: bool = False,
                         error: str | None = None) -> list[Row[Any]]:
    """Cancel the requests' rows not yet claimed; returns them (rule, channel)."""
    query = update(notifications).where(notifications.c.request_id.in_(request_ids),
                                        notifications.c.status.in_(TRANSITIONS["cancel"]))
    if family_only:
        query = query.where(notifications.c.kind == "family")
    values: dict[str, Any] = {"status": Status.CANCELLED, "note": note, "updated_at": now}
    if error is not None:
        values["error"] = error
    return list((await conn.execute(
        query.values(**values).returning(notifications.c.rule, notifications.c.channel))).all())


async def request_cancel_of_claimed(conn: AsyncConnection, request_id: str, note: str,
                                    now: dt.datetime) -> int:
    """Claimed rows are the dispatcher's to settle: its guard sees the flag before any send."""
    flagged = await conn.execute(
        update(notifications)
        .where(notifications.c.request_id == request_id,
               notifications.c.status == Status.SENDING,
               notifications.c.cancel_requested == false())
        .values(cancel_requested=True, note=note, updated_at=now))
    return int(flagged.rowcount)


async def pending_of(conn: AsyncConnection, request_id: str) -> list[AnyRow]:
    return list((await conn.execute(
        select(notifications.c.id, notifications.c.kind, notifications.c.family_index,
               notifications.c.recipient_ref, notifications.c.channel)
        .where(notifications.c.request_id == request_id,
               notifications.c.status == Status.PENDING))).all())


async def rewrite_pending(conn: AsyncConnection, notification_id: str,
                          rendered: dict[str, Any], pupil_ids: list[str], note: str,
                          now: dt.datetime) -> None:
    """A message not claimed yet, re-rendered (siblings taken out of it)."""
    await conn.execute(
        update(notifications).where(notifications.c.id == notification_id,
                                    notifications.c.status == Status.PENDING)
        .values(body=rendered["body"], subject=rendered["subject"], html=rendered["html"],
                pupil_ids=pupil_ids, note=note, updated_at=now))


async def family_rows(conn: AsyncConnection, request_id: str) -> list[AnyRow]:
    """Every family row of a request: what the chase decides from."""
    return list((await conn.execute(
        select(notifications.c.channel, notifications.c.status, notifications.c.sent_at,
               notifications.c.family_index)
        .where(notifications.c.request_id == request_id,
               notifications.c.kind == "family"))).all())


async def family_rows_of(conn: AsyncConnection,
                         request_ids: list[str]) -> dict[str, list[AnyRow]]:
    """`family_rows` of several requests in one query, by request."""
    found: dict[str, list[AnyRow]] = {request_id: [] for request_id in request_ids}
    if not request_ids:
        return found
    for row in await conn.execute(
            select(notifications.c.request_id, notifications.c.channel,
                   notifications.c.status, notifications.c.sent_at,
                   notifications.c.family_index)
            .where(notifications.c.request_id.in_(request_ids),
                   notifications.c.kind == "family")):
        found[row.request_id].append(row)
    return found


async def _apply_receipt(conn: AsyncConnection, where: list[Any], status: Status,
                         error: str | None, now: dt.datetime) -> list[Row[Any]]:
    return list((await conn.execute(
        update(notifications)
        .where(*where, notifications.c.status.in_(RECEIPTS[status]))
        .values(status=status, updated_at=now, error=error)
        .returning(notifications.c.id, notifications.c.request_id, notifications.c.kind,
                   notifications.c.channel, notifications.c.school_urn,
                   notifications.c.to))).all())


async def _consequences(conn: AsyncConnection, settled: list[tuple[Row[Any], Status]],
                        now: dt.datetime) -> None:
    """What settled or receipted rows mean beyond themselves, in the same transaction."""
    for row, status in settled:
        if status == Status.SUPPRESSED and row.channel == "sms":
            await optout.opt_out(conn, row.school_urn, row.to, "twilio-21610", now)
    family = sorted({row.request_id for row, _ in settled if row.kind == "family"})
    if family:
        await chains.mark_for_check(conn, family, now)


async def _take_early(conn: AsyncConnection, provider_ids: list[str]) -> list[Row[Any]]:
    if not provider_ids:
        return []
    early = list((await conn.execute(
        select(early_status_callbacks)
        .where(early_status_callbacks.c.provider_id.in_(provider_ids))
        .order_by(early_status_callbacks.c.received_at))).all())
    if early:
        await conn.execute(delete(early_status_callbacks)
                           .where(early_status_callbacks.c.provider_id.in_(
                               {e.provider_id for e in early})))
    return early


async def _lock_provider_id(conn: AsyncConnection, provider_id: str) -> None:
    await _lock_provider_ids(conn, [provider_id])


async def _lock_provider_ids(conn: AsyncConnection, provider_ids: list[str]) -> None:
    """In key order, so two transactions locking several never wait for each other."""
    if provider_ids and conn.engine.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, key) "
                 "FROM unnest(CAST(:keys AS integer[])) AS key ORDER BY key"),
            {"space": _PROVIDER_ID_LOCKS,
             "keys": sorted({zlib.crc32(p.encode()) - 2**31 for p in provider_ids})})
