"""The contact chains (`contact_requests`): every request as received and where its family
chase stands. This module is the table's only writer; the intake, the chase
(notifier.fallback), cancellations and replies ask it.

Every state change is a conditional UPDATE on the states it may start from (`TRANSITIONS`), and
its row count says whether it happened: two replicas moving the same chain cannot both move
it, and a chain that is `cancelled`, `replied`, `reached` or `unreachable` is never chased
again. The one exception is a cancellation, which any state accepts (it is final)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from broker_messages.contact import ContactRequest, follow_on_id
from servicekit.database import dialect_insert, supports_skip_locked
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.models import contact_requests


class ChainState(StrEnum):
    CHASING = "chasing"
    REACHED = "reached"
    REPLIED = "replied"
    UNREACHABLE = "unreachable"
    # A carer shared by siblings was not reached: each child's follow-on chain goes on alone.
    SPLIT = "split"
    NONE = "none"  # no family to chase
    CANCELLED = "cancelled"


# transition -> the states it may start from.
TRANSITIONS: dict[str, frozenset[ChainState]] = {
    # The chase: a contact delivered, the next contact tried, everyone tried.
    "reach": frozenset({ChainState.CHASING}),
    "next_contact": frozenset({ChainState.CHASING}),
    "exhaust": frozenset({ChainState.CHASING}),
    "split": frozenset({ChainState.CHASING}),
    # docs/rules.md "Replies": the family has been heard.
    "reply": frozenset({ChainState.CHASING}),
    # docs/rules.md "Amendments": final whatever came before.
    "cancel": frozenset(ChainState),
    # A tombstone (cancelled before its request came) for some of the request's siblings only:
    # the request goes ahead for the others.
    "revive": frozenset({ChainState.CANCELLED}),
}


def new_chain(request: ContactRequest, now: dt.datetime) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "school_urn": request.school.urn,
        "rule": request.rule,
        "payload": request.model_dump_json(by_alias=True),
        "state": ChainState.CHASING if request.family else ChainState.NONE,
        "position": 0,
        "check_at": None,
        "created_at": now,
        "updated_at": now,
    }


async def open_chains(conn: AsyncConnection, chains: list[dict[str, Any]]) -> None:
    """Store new requests' chains (`new_chain`); one already stored is left as it is."""
    if chains:
        await conn.execute(dialect_insert(conn.engine)(contact_requests).on_conflict_do_nothing(),
                           chains)


async def locked(conn: AsyncConnection, request_id: str) -> Row[Any] | None:
    """The chain, locked for this transaction where the database can (PostgreSQL)."""
    query = select(contact_requests).where(contact_requests.c.request_id == request_id)
    if supports_skip_locked(conn.engine):
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def locked_many(conn: AsyncConnection, request_ids: list[str]) -> list[Row[Any]]:
    """As `locked`, for several chains, locked in request order."""
    query = (select(contact_requests).where(contact_requests.c.request_id.in_(request_ids))
             .order_by(contact_requests.c.request_id))
    if supports_skip_locked(conn.engine):
        query = query.with_for_update()
    return list((await conn.execute(query)).all())


async def due_for_check(conn: AsyncConnection, now: dt.datetime, limit: int = 500) -> list[str]:
    return list((await conn.execute(
        select(contact_requests.c.request_id)
        .where(contact_requests.c.state == ChainState.CHASING,
               contact_requests.c.check_at <= now)
        .order_by(contact_requests.c.check_at).limit(limit))).scalars().all())


async def move(conn: AsyncConnection, chain: Any, transition: str, now: dt.datetime, *,
               state: ChainState = ChainState.CHASING, position: int | None = None) -> bool:
    """One step of the chase, conditional on the chain being where `chain` saw it."""
    result = await conn.execute(
        update(contact_requests)
        .where(contact_requests.c.request_id == chain.request_id,
               contact_requests.c.state.in_(TRANSITIONS[transition]),
               contact_requests.c.position == chain.position)
        .values(state=state, position=chain.position if position is None else position,
                check_at=None, updated_at=now))
    return bool(result.rowcount)


async def check_again_at(conn: AsyncConnection, request_ids: list[str], at: dt.datetime | None,
                         now: dt.datetime) -> None:
    """When to look at chains still waiting (None: when one of their rows settles)."""
    await conn.execute(update(contact_requests)
                       .where(contact_requests.c.request_id.in_(request_ids),
                              contact_requests.c.state == ChainState.CHASING)
                       .values(check_at=at, updated_at=now))


async def mark_for_check(conn: AsyncConnection, request_ids: list[str],
                         now: dt.datetime) -> None:
    """Ask the chase to look at chains (a family row settled), in the caller's transaction,
    so a crash before it looks delays the fallback instead of losing it."""
    await conn.execute(update(contact_requests)
                       .where(contact_requests.c.request_id.in_(request_ids),
                              contact_requests.c.state == ChainState.CHASING)
                       .values(check_at=now))


async def with_follow_ons(conn: AsyncConnection, request_ids: list[str]) -> list[str]:
    """These requests and, for those split after a shared carer was not reached, each child's
    follow-on chain: a reply from that carer is about all of them."""
    rows = await conn.execute(
        select(contact_requests.c.payload)
        .where(contact_requests.c.request_id.in_(request_ids),
               contact_requests.c.state == ChainState.SPLIT))
    found = list(request_ids)
    for (payload,) in rows:
        request = ContactRequest.model_validate_json(payload)
        found += [follow_on_id(request.request_id, f.pupil_id) for f in request.follow_on]
    return sorted(set(found))


async def stop_for_reply(conn: AsyncConnection, request_ids: list[str],
                         now: dt.datetime) -> None:
    await conn.execute(
        update(contact_requests)
        .where(contact_requests.c.request_id.in_(request_ids),
               contact_requests.c.state.in_(TRANSITIONS["reply"]))
        .values(state=ChainState.REPLIED, check_at=None, updated_at=now))


async def cancel(conn: AsyncConnection, request_id: str, school_urn: str, reason: str,
                 cancelled_pupils: list[str], now: dt.datetime) -> None:
    """The chain becomes `cancelled` whatever its state; with no request yet, a tombstone that
    remembers which pupils were cancelled (filled in by `fill_tombstone` when it comes)."""
    insert = dialect_insert(conn.engine)(contact_requests).values(
        request_id=request_id, school_urn=school_urn, rule="", payload="",
        state=ChainState.CANCELLED, position=0, check_at=None, created_at=now, updated_at=now,
        cancel_reason=reason, cancelled_pupils=cancelled_pupils)
    await conn.execute(insert.on_conflict_do_update(
        index_elements=[contact_requests.c.request_id],
        set_={"state": ChainState.CANCELLED, "check_at": None, "cancel_reason": reason,
              "cancelled_pupils": cancelled_pupils, "updated_at": now},
    ))


async def replace_request(conn: AsyncConnection, request: ContactRequest,
                          now: dt.datetime) -> None:
    """The request rewritten (siblings taken out of it); its chase goes on where it was."""
    await conn.execute(
        update(contact_requests).where(contact_requests.c.request_id == request.request_id)
        .values(payload=request.model_dump_json(by_alias=True), updated_at=now))


async def revive(conn: AsyncConnection, request: ContactRequest, now: dt.datetime) -> bool:
    """A tombstone's request arrived naming pupils not cancelled: it is chased for them."""
    result = await conn.execute(
        update(contact_requests)
        .where(contact_requests.c.request_id == request.request_id,
               contact_requests.c.state.in_(TRANSITIONS["revive"]))
        .values(new_chain(request, now) | {"cancel_reason": None}))
    return bool(result.rowcount)


async def fill_tombstone(conn: AsyncConnection, chain: dict[str, Any]) -> None:
    """A cancellation that came first left an empty chain row: record what it cancelled."""
    await conn.execute(
        update(contact_requests)
        .where(contact_requests.c.request_id == chain["request_id"],
               contact_requests.c.payload == "")
        .values(rule=chain["rule"], payload=chain["payload"]))


async def cancelled_among(conn: AsyncConnection, request_ids: list[str]) -> dict[str, Row[Any]]:
    """Which of these requests are cancelled (with the reason and whether the chain row is a
    tombstone still waiting for its request)."""
    if not request_ids:
        return {}
    rows = await conn.execute(
        select(contact_requests.c.request_id, contact_requests.c.cancel_reason,
               contact_requests.c.cancelled_pupils,
               (contact_requests.c.payload == "").label("tombstone"))
        .where(contact_requests.c.request_id.in_(request_ids),
               contact_requests.c.state == ChainState.CANCELLED))
    return {row.request_id: row for row in rows}
